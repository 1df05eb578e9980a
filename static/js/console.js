// The in-page VM console: noVNC over /ws/console/ (compute/consumers.py).
//
// Each connection spends one single-use ticket, presented as the websocket subprotocol
// "isotope-ticket.<ticket>" (never in the URL). The console page embeds a ticket for its
// first connection; every other connection (panel on the VM page, reconnects) asks
// POST .../virtualmachines/<name>/console/ for a fresh one. The server's close codes say
// what happened: 4502/4503 (VNC server unreachable or moved with a migration) reconnect
// by themselves; the others are shown with a Reconnect button.
import RFB from "../vendor/novnc/core/rfb.js";
import KeyTable from "../vendor/novnc/core/input/keysym.js";
import keysyms from "../vendor/novnc/core/input/keysymdef.js";

const RETRYABLE = new Set([4502, 4503]);
// A phase word in the page's language (live.js owns the catalogue of them).
function phaseWord(phase) {
  return window.Isotope && window.Isotope.phaseLabel ? window.Isotope.phaseLabel(phase) : phase;
}
const MAX_RETRIES = 8;
const CLOSE_TEXT = {
  1006: gettext("The connection was lost."),
  4400: gettext("The console session could not start."),
  4401: gettext("The console ticket was refused (expired or already used). Reconnect for a new one."),
  4403: gettext("You no longer have access to this console."),
  4404: gettext("This VM no longer exists."),
  4408: gettext("Disconnected after a long time without input."),
  4409: gettext("Too many console sessions are open on this VM. Close one and reconnect."),
  4410: gettext("The VM is not running."),
};

// US layout: the physical key (KeyboardEvent.code) for each printable ASCII character,
// and which need Shift, so pasted text reaches the guest as a person would type it.
const PLAIN = "`1234567890-=[]\\;',./";
const PLAIN_CODES = [
  "Backquote", "Digit1", "Digit2", "Digit3", "Digit4", "Digit5", "Digit6", "Digit7",
  "Digit8", "Digit9", "Digit0", "Minus", "Equal", "BracketLeft", "BracketRight",
  "Backslash", "Semicolon", "Quote", "Comma", "Period", "Slash",
];
const SHIFTED = {
  "~": "`", "!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6", "&": "7", "*": "8",
  "(": "9", ")": "0", "_": "-", "+": "=", "{": "[", "}": "]", "|": "\\", ":": ";", '"': "'",
  "<": ",", ">": ".", "?": "/",
};

function keyFor(ch) {
  if (ch === "\n") return { keysym: KeyTable.XK_Return, code: "Enter", shift: false };
  if (ch === "\t") return { keysym: KeyTable.XK_Tab, code: "Tab", shift: false };
  if (ch === " ") return { keysym: KeyTable.XK_space, code: "Space", shift: false };
  const keysym = keysyms.lookup(ch.codePointAt(0));
  if (/^[a-z]$/.test(ch)) return { keysym, code: "Key" + ch.toUpperCase(), shift: false };
  if (/^[A-Z]$/.test(ch)) return { keysym, code: "Key" + ch, shift: true };
  if (PLAIN.includes(ch)) return { keysym, code: PLAIN_CODES[PLAIN.indexOf(ch)], shift: false };
  if (ch in SHIFTED) return { keysym, code: PLAIN_CODES[PLAIN.indexOf(SHIFTED[ch])], shift: true };
  return { keysym, code: null, shift: false }; // anything else: the keysym alone
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

class Console {
  constructor(root) {
    this.root = root;
    this.screen = root.querySelector("[data-console-screen]");
    this.stateEl = root.querySelector("[data-console-state]");
    this.messageEl = root.querySelector("[data-console-message]");
    this.viewOnlyRole = root.dataset.viewOnly === "true";
    this.available = root.dataset.available === "true";
    this.scale = "fit";
    this.rfb = null;
    this.ws = null;
    this.retries = 0;
    this.userClosed = false;
    // Each connect and disconnect starts a new attempt: a connect that finds, after
    // waiting for its ticket, that another attempt began (the user disconnected, or
    // connected again) stops there (no second session, no connection after Disconnect).
    this.attempt = 0;
    this.retryTimer = null;
    // The guest gets every key, Tab included, so keyboard users need a way out (WCAG
    // 2.1.2): Ctrl+] (virsh console's escape) moves the focus to the toolbar. Captured on
    // the way down, before noVNC sends it to the guest.
    this.screen.addEventListener("keydown", (event) => {
      if (event.ctrlKey && (event.code === "BracketRight" || event.key === "]")) {
        event.preventDefault();
        event.stopPropagation();
        const bar = root.querySelector(".iso-console-bar");
        const target = bar && Array.from(bar.querySelectorAll("button")).find((b) => !b.hidden && !b.disabled);
        if (target) target.focus();
      }
    }, true);
    const first = document.getElementById("console-first-ticket");
    this.firstTicket = root.dataset.autoconnect === "true" && first ? JSON.parse(first.textContent) : null;
    this.bind();
    if (!this.available) {
      this.setState("unavailable", gettext("No console"));
      this.button("connect").disabled = true;
    } else if (root.dataset.autoconnect === "true") {
      this.connect();
    } else {
      this.setState("idle", gettext("Not connected"));
    }
  }

  button(name) {
    return this.root.querySelector(`[data-console-action="${name}"]`);
  }

  bind() {
    this.root.addEventListener("click", (event) => {
      const action = event.target.closest("[data-console-action]");
      if (action) this.act(action.dataset.consoleAction);
      const keys = event.target.closest("[data-console-keys]");
      if (keys) this.sendCombo(keys.dataset.consoleKeys.split("+"));
    });
    const scale = this.root.querySelector("[data-console-scale]");
    scale.addEventListener("change", () => {
      this.scale = scale.value;
      this.applyScale();
    });
    const form = this.root.querySelector("[data-console-paste-form]");
    if (form) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const area = form.querySelector("[data-console-paste-text]");
        const text = area.value;
        form.hidden = true;
        area.value = "";
        this.typeText(text);
      });
    }
    // The VM's live state (live.js): offer to connect once it runs again.
    document.addEventListener("isotope:resource", (event) => {
      const data = event.detail && event.detail.data;
      if (!data || data.kind !== "vm" || data.name !== this.root.dataset.vm) return;
      const phase = data.state && data.state.phase;
      const running = ["Running", "Paused", "Migrating"].includes(phase);
      if (running && !this.rfb && !this.available) {
        this.available = true;
        this.button("connect").disabled = false;
        this.setState("idle", gettext("Not connected"));
        this.message(interpolate(gettext("%(vm)s is %(phase)s: connect to its console."), { vm: this.root.dataset.vm, phase: phaseWord(phase) }, true), "info");
      } else if (!running && !this.rfb) {
        this.available = false;
        this.button("connect").disabled = true;
        this.setState("unavailable", gettext("No console"));
        this.message(data.deleted ? gettext("This VM was deleted.") : interpolate(gettext("%(vm)s is %(phase)s: the console is available while it runs."), { vm: this.root.dataset.vm, phase: phaseWord(phase) }, true));
      }
    });
  }

  act(action) {
    switch (action) {
      case "connect":
        this.retries = 0;
        this.connect();
        break;
      case "disconnect":
        this.disconnect();
        break;
      case "cad":
        if (this.rfb) this.rfb.sendCtrlAltDel();
        break;
      case "paste": {
        const form = this.root.querySelector("[data-console-paste-form]");
        form.hidden = !form.hidden;
        if (!form.hidden) {
          const area = form.querySelector("[data-console-paste-text]");
          if (navigator.clipboard && navigator.clipboard.readText) {
            navigator.clipboard.readText().then((text) => { if (!area.value) area.value = text; }, () => {});
          }
          area.focus();
        }
        break;
      }
      case "paste-cancel":
        this.root.querySelector("[data-console-paste-form]").hidden = true;
        break;
      case "fullscreen":
        if (document.fullscreenElement) document.exitFullscreen();
        else this.root.requestFullscreen().catch(() => {});
        break;
    }
  }

  setState(state, label) {
    this.root.dataset.state = state;
    this.stateEl.dataset.state = state;
    this.stateEl.textContent = label;
    const live = !!this.rfb && state === "connected";
    this.root.querySelectorAll("[data-needs-session]").forEach((el) => { el.disabled = !live; });
    const connect = this.button("connect");
    connect.hidden = state === "connected" || state === "connecting";
    connect.querySelector("[data-label]").textContent = state === "idle" || state === "unavailable" ? gettext("Connect") : gettext("Reconnect");
    this.button("disconnect").hidden = !(state === "connected" || state === "connecting" || state === "reconnecting");
  }

  message(text, tone = "secondary") {
    this.messageEl.hidden = !text;
    this.messageEl.className = `alert alert-${tone} m-3 mb-0`;
    this.messageEl.textContent = text || "";
  }

  async ticket() {
    if (this.firstTicket) {
      const first = this.firstTicket;
      this.firstTicket = null;
      return first;
    }
    const response = await fetch(this.root.dataset.ticketUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.detail || body.title || `The portal answered ${response.status}.`);
      error.final = response.status !== 503 && response.status !== 502;
      throw error;
    }
    return body;
  }

  async connect() {
    clearTimeout(this.retryTimer);
    const attempt = ++this.attempt;
    this.teardown();
    this.userClosed = false;
    this.setState(this.retries ? "reconnecting" : "connecting", this.retries ? gettext("Reconnecting…") : gettext("Connecting…"));
    if (!this.retries) this.message("");
    let ticket;
    try {
      ticket = await this.ticket();
    } catch (error) {
      if (attempt !== this.attempt) return;
      this.setState("error", gettext("Not connected"));
      this.message(error.message, "warning");
      return;
    }
    if (attempt !== this.attempt) return; // disconnected, or connecting again, meanwhile
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const path = ticket.websocketPath || "/ws/console/";
    const ws = new WebSocket(`${scheme}//${location.host}${path}`, ["binary", `isotope-ticket.${ticket.ticket}`]);
    ws.binaryType = "arraybuffer";
    ws.addEventListener("close", (event) => this.closed(ws, event));
    this.ws = ws;
    const rfb = new RFB(this.screen, ws, { shared: true });
    rfb.viewOnly = this.viewOnlyRole || !!ticket.viewOnly;
    rfb.background = "#0b1020";
    rfb.focusOnClick = !rfb.viewOnly;
    rfb.addEventListener("connect", () => {
      this.retries = 0;
      this.setState("connected", rfb.viewOnly ? gettext("Connected · view only") : gettext("Connected"));
      this.message("");
      this.applyScale();
      if (!rfb.viewOnly) rfb.focus();
    });
    rfb.addEventListener("desktopname", (event) => { this.screen.title = event.detail.name; });
    this.rfb = rfb;
  }

  closed(ws, event) {
    if (ws !== this.ws) return; // an older socket
    this.teardown();
    if (this.userClosed) {
      this.setState("idle", gettext("Not connected"));
      this.message(gettext("Disconnected."));
      return;
    }
    if (RETRYABLE.has(event.code) && this.retries < MAX_RETRIES) {
      this.retries += 1;
      this.setState("reconnecting", gettext("Reconnecting…"));
      this.message(event.reason || gettext("The console moved; reconnecting…"), "info");
      this.retryTimer = setTimeout(() => this.connect(), Math.min(400 * 2 ** (this.retries - 1), 5000));
      return;
    }
    const final = event.code === 4410 || event.code === 4404;
    this.setState(final ? "unavailable" : "error", gettext("Disconnected"));
    if (final) {
      this.available = false;
      this.button("connect").disabled = true;
    }
    this.message(event.reason || CLOSE_TEXT[event.code] || interpolate(gettext("Disconnected (code %(code)s)."), { code: event.code }, true), final ? "secondary" : "warning");
  }

  teardown() {
    const rfb = this.rfb;
    this.rfb = null;
    this.ws = null;
    if (rfb) {
      try { rfb.disconnect(); } catch (e) { /* already closed */ }
    }
    this.screen.replaceChildren();
  }

  disconnect() {
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.userClosed = true;
    const ws = this.ws;
    this.teardown();
    this.setState("idle", gettext("Not connected"));
    this.message(gettext("Disconnected."));
    if (ws) ws.close();
  }

  applyScale() {
    if (!this.rfb) return;
    this.rfb.scaleViewport = this.scale === "fit";
    this.rfb.clipViewport = false;
    this.rfb.resizeSession = false;
  }

  sendCombo(names) {
    if (!this.rfb || this.rfb.viewOnly) return;
    const keys = names.map((name) => KeyTable["XK_" + name]).filter(Boolean);
    keys.forEach((keysym) => this.rfb.sendKey(keysym, null, true));
    keys.slice().reverse().forEach((keysym) => this.rfb.sendKey(keysym, null, false));
    this.rfb.focus();
  }

  // Clipboard paste: each character as the key press a person would make (Shift where
  // the US layout needs it), paced so the guest's keyboard buffer keeps up.
  async typeText(text) {
    const rfb = this.rfb;
    if (!rfb || rfb.viewOnly || !text) return;
    for (const ch of Array.from(text.replace(/\r\n?/g, "\n")).slice(0, 4000)) {
      if (this.rfb !== rfb) return;
      const key = keyFor(ch);
      if (!key.keysym) continue;
      if (key.shift) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", true);
      rfb.sendKey(key.keysym, key.code);
      if (key.shift) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", false);
      await sleep(12);
    }
    rfb.focus();
  }
}

// The read-only serial log: fetched every 3 s while its <details> is open and the page
// is seen. A hidden tab asks nothing (shown again, it fetches at once); one request is
// out at a time, the next asked 3 s after its answer; a failed one waits for the next.
const SERIAL_POLL_MS = 3000;

function serialLog(details) {
  const pre = details.querySelector("[data-serial-text]");
  let timer = null;
  let asking = false;
  let again = false; // asked for while a request was out: fetch once it is back
  const wanted = () => details.open && document.visibilityState === "visible";
  const load = async () => {
    clearTimeout(timer);
    timer = null;
    if (!wanted()) return;
    if (asking) {
      again = true;
      return;
    }
    asking = true;
    again = false;
    try {
      const response = await fetch(details.dataset.url, { credentials: "same-origin" });
      if (response.ok) {
        const text = await response.text();
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
        pre.textContent = text || gettext("(nothing yet)");
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      }
    } catch (error) {
      // The network or the server failed this once: the next poll tries again.
    } finally {
      asking = false;
    }
    clearTimeout(timer);
    if (again) load();
    else if (wanted()) timer = setTimeout(load, SERIAL_POLL_MS);
  };
  details.addEventListener("toggle", load);
  document.addEventListener("visibilitychange", load);
}

document.querySelectorAll("[data-console]").forEach((root) => { root.isotopeConsole = new Console(root); });
document.querySelectorAll("[data-serial]").forEach(serialLog);
