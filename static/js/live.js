/*
 * Isotope live updates: one websocket to /ws/ per tab (see monitoring/consumers.py).
 *
 * What a page declares:
 *   <body data-live-tenant="acme">               subscribe to the tenant's stream
 *   <meta name="isotope-live" content="acme/vm/web1">   (any number) one object's stream
 *   <body data-live-notifications>                the user's own notifications (the bell)
 *   <script id="isotope-live-baseline" type="application/json">{"tenant.acme": 12}</script>
 *       the streams' seq when the page was rendered: anything newer triggers a resync
 *
 * What it does:
 *   - reconnects with exponential backoff (0.5 s … 15 s, jitter) and re-subscribes;
 *     a 4401 close (signed out) stops it;
 *   - tracks seq per stream; on a gap, a reconnect that missed messages, or a seq
 *     behind the baseline, dispatches `isotope:resync` and asks the server for a
 *     snapshot (resource states in it are applied like live messages); a reconnect
 *     subscribes "since" the seq it holds all of (a first subscribe to the tenant's
 *     stream, since the baseline), and the server sends that snapshot unasked, whole
 *     only for the states stored after that seq (the others by name); a gap's resync
 *     asks "since" the seq held all of, for the same delta;
 *   - never shows a resource's state older than one it showed, for states that carry
 *     their uid and resourceVersion: two writers' states may reach it in the other order
 *     than they were written (each is sent after its own commit), and a state with the
 *     same uid and a lower resourceVersion than the last one applied is dropped (neither
 *     patched nor dispatched);
 *   - dispatches on document: `isotope:event`, `isotope:resource`, `isotope:metrics`,
 *     `isotope:notification`
 *     (detail = {stream, seq, data, resync?}), `isotope:resync` ({stream, reason}), `isotope:snapshot`
 *     ({stream, seq, data}), `isotope:live-status` ({state: connecting|live|offline});
 *   - patches generic DOM for resource states: inside every element with
 *     data-live-kind="vm" data-live-name="web1" (or on it), elements with
 *     data-live-field="phase" get the phase as text and a badge class, data-live-field=
 *     "message" the message; elements with data-live-action="stop" are hidden unless
 *     "stop" is in state.actions; a deleted resource gets data-live-deleted;
 *     "phaseChanged" elements (<time>) get the new datetime, "readyCondition" ones the Ready
 *     condition (state.conditions) as a badge, "readyMessage" its message; "labels" ones
 *     the label map (state.labels) as key=value chips, "labelsText" (the closed "Edit
 *     labels" form's textarea) its lines;
 *   - keeps every <time data-ago datetime="…"> current ("3 minutes ago"), worded like
 *     the server's ``ago`` filter (monitoring/formats.py);
 *   - shows a Bootstrap toast for Warning events;
 *   - says so at the bottom of the page when the page may be behind (`#iso-live-banner`):
 *     the connection has been down for OFFLINE_GRACE_MS (with "Reconnect now", which
 *     tries at once instead of waiting out the backoff), the user was signed out (4401),
 *     or a check the page made after a resync (`check`, `retrying`) failed and is being
 *     retried (with "Reload"); it goes away when the cause does.
 * API: window.Isotope.live.subscribe({tenant, kind, name}), .unsubscribe(stream), .streams;
 *      .check(url, gone): GET url (the API), gone() on a 404, retried with backoff on a
 *      failure while the banner says the page may be out of date;
 *      .retrying(key, run): the same for any run() that returns a promise (one per key);
 *      window.Isotope.time.ago(date), .duration(seconds), .refresh(root)
 */
(function () {
  "use strict";

  const PHASE_BADGES = {
    Running: "text-bg-success",
    Pending: "text-bg-info", Provisioning: "text-bg-info", Starting: "text-bg-info",
    Stopping: "text-bg-warning", Migrating: "text-bg-primary", Deleting: "text-bg-warning",
    Paused: "text-bg-warning", Stopped: "text-bg-secondary",
    Failed: "text-bg-danger", Unknown: "text-bg-dark",
  };
  const BADGE_CLASSES = ["text-bg-success", "text-bg-info", "text-bg-warning", "text-bg-primary",
    "text-bg-secondary", "text-bg-danger", "text-bg-dark", "text-bg-light"];

  const wanted = new Map(); // stream key → {tenant, kind, name}
  const keyToStream = new Map(); // key → stream name the server confirmed
  const lastSeq = new Map(); // stream → last seq applied
  // stream → the seq as of which this page holds every state of the stream: set when
  // nothing is missing (a subscribe at the page's own seq, each message in order, a
  // resync); left behind while a resync is on its way. A reconnect subscribes "since"
  // it, and gets whole only the states stored after it.
  const held = new Map();
  const versions = new Map(); // "tenant/kind/name" → {uid, version} of the state last applied
  const toasted = new Set();
  let pending = []; // subscribes sent and not yet answered, oldest first: {key, since}
  let socket = null;
  let attempt = 0;
  let stopped = false;
  let timer = null;

  function emit(name, detail) {
    document.dispatchEvent(new CustomEvent(name, { detail: detail }));
  }

  function status(state) {
    document.querySelectorAll("[data-live-status]").forEach(function (el) {
      el.textContent = { connecting: gettext("connecting…"), live: gettext("live"), offline: gettext("offline — reconnecting") }[state] || state;
      el.dataset.liveState = state;
    });
    if (state === "live") {
      clearTimeout(offlineTimer);
      offlineTimer = null;
      offline = false;
    } else if (state === "offline" && !offline && offlineTimer === null) {
      // A blip the first retry mends is not worth a word.
      offlineTimer = setTimeout(function () { offlineTimer = null; offline = true; banner(); }, OFFLINE_GRACE_MS);
    }
    connecting = state === "connecting";
    banner();
    emit("isotope:live-status", { state: state });
  }

  // --- When the page may be behind: one line at the bottom --------------------------
  const OFFLINE_GRACE_MS = 2000;
  const RETRY_MS = [1000, 2000, 4000, 8000, 16000];
  let offline = false; // down for longer than the grace
  let offlineTimer = null;
  let connecting = false;
  const stale = new Set(); // keys of checks that failed and have not succeeded since
  const retries = new Map(); // key → the promise of its checks under way

  function bannerBox() {
    let box = document.getElementById("iso-live-banner");
    if (box) return box;
    box = document.createElement("div");
    box.id = "iso-live-banner";
    box.className = "iso-live-banner alert alert-warning shadow py-2 px-3";
    box.setAttribute("role", "status");
    box.dataset.testid = "live-banner";
    box.hidden = true;
    const icon = document.createElement("i");
    icon.setAttribute("aria-hidden", "true");
    const text = document.createElement("span");
    text.dataset.liveBannerText = "";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-link alert-link p-0";
    button.addEventListener("click", function () {
      if (box.dataset.state === "offline") reconnectNow();
      else location.reload();
    });
    box.append(icon, text, button);
    document.body.appendChild(box);
    return box;
  }

  function banner() {
    if (!document.body) return;
    const box = bannerBox();
    const state = stopped ? "signed-out" : offline ? "offline" : stale.size ? "stale" : "";
    box.hidden = !state;
    if (box.dataset.state === state && state !== "offline") return;
    box.dataset.state = state;
    const [icon, text, button] = box.children;
    if (state === "signed-out") {
      icon.className = "bi bi-person-x";
      text.textContent = gettext("You have been signed out: this page no longer updates.");
      button.textContent = gettext("Sign in again");
    } else if (state === "offline") {
      icon.className = "bi bi-wifi-off";
      text.textContent = connecting ? gettext("Live updates paused: reconnecting…") : gettext("Live updates paused: the server cannot be reached.");
      button.textContent = gettext("Reconnect now");
    } else if (state === "stale") {
      icon.className = "bi bi-exclamation-triangle";
      text.textContent = gettext("This page may be out of date: a check with the server failed and is being retried.");
      button.textContent = gettext("Reload");
    }
    button.hidden = state === "offline" && connecting;
  }

  function reconnectNow() {
    if (stopped || socket) return;
    clearTimeout(timer);
    connect();
  }

  // Runs `run` (a function returning a promise) until it succeeds, up to
  // RETRY_MS.length more times, waiting longer each time; while it fails, the banner
  // says the page may be out of date. One run per key: a second ask while one is under
  // way gets the first one's promise (true once it succeeded, false when it gave up).
  function retrying(key, run) {
    if (retries.has(key)) return retries.get(key);
    const done = new Promise(function (resolve) {
      let tries = 0;
      function once() {
        Promise.resolve().then(run).then(function () {
          retries.delete(key);
          if (stale.delete(key)) banner();
          resolve(true);
        }, function () {
          stale.add(key);
          banner();
          if (tries >= RETRY_MS.length) { retries.delete(key); resolve(false); return; }
          setTimeout(once, RETRY_MS[tries++]);
        });
      }
      once();
    });
    retries.set(key, done);
    return done;
  }

  // Whether what `url` (the API) names still exists: `gone()` on a 404; any answer but
  // a 404 or a success is a failed check, retried.
  function check(url, gone) {
    return retrying("check " + url, function () {
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 404) gone();
          else if (!response.ok) throw new Error("HTTP " + response.status);
        });
    });
  }

  function keyOf(target) {
    if (target.notifications) return "notifications";
    return target.kind ? target.tenant + "/" + target.kind + "/" + target.name : target.tenant;
  }

  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  function subscribe(target) {
    const key = keyOf(target);
    if (!wanted.has(key)) wanted.set(key, target);
    const frame = target.notifications ? { type: "subscribe", notifications: true } : { type: "subscribe", tenant: target.tenant };
    if (target.kind) { frame.kind = target.kind; frame.name = target.name; }
    // A reconnect says which seq it holds: the server then sends the state it missed
    // right after "subscribed", without being asked. So does a page's first subscribe
    // to its tenant's stream, with the seq the page was rendered at (its baseline): a
    // stream that moved on meanwhile sends whole only the states stored since.
    const stream = keyToStream.get(key);
    if (stream !== undefined && held.has(stream)) frame.since = held.get(stream);
    else if (stream === undefined && !target.kind && !target.notifications) {
      const rendered = baseline()["tenant." + target.tenant];
      if (typeof rendered === "number") frame.since = rendered;
    }
    if (send(frame)) pending.push({ key: key, since: frame.since });
  }

  function unsubscribe(stream) {
    keyToStream.forEach(function (s, key) { if (s === stream) { wanted.delete(key); keyToStream.delete(key); } });
    lastSeq.delete(stream);
    held.delete(stream);
    send({ type: "unsubscribe", stream: stream });
  }

  // `since`: the seq as of which the page holds all of the stream (a gap's), so that
  // only the states stored after it come whole.
  function resync(stream, reason, since) {
    emit("isotope:resync", { stream: stream, reason: reason });
    send(since === undefined ? { type: "resync", stream: stream } : { type: "resync", stream: stream, since: since });
  }

  function baseline() {
    const el = document.getElementById("isotope-live-baseline");
    if (!el) return {};
    try { return JSON.parse(el.textContent) || {}; } catch (e) { return {}; }
  }

  // --- Human times (monitoring/formats.py words them the same way) -----------------
  const AGO_UNITS = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  // Literal msgids, so makemessages finds them (djangojs.po).
  const AGO_WORDS = {
    day: function (n) { return ngettext("%(count)s day ago", "%(count)s days ago", n); },
    hour: function (n) { return ngettext("%(count)s hour ago", "%(count)s hours ago", n); },
    minute: function (n) { return ngettext("%(count)s minute ago", "%(count)s minutes ago", n); },
    second: function (n) { return ngettext("%(count)s second ago", "%(count)s seconds ago", n); },
  };

  function ago(date) {
    const seconds = Math.max(0, Math.floor((Date.now() - new Date(date).getTime()) / 1000));
    if (!isFinite(seconds)) return "";
    if (seconds < 5) return gettext("just now");
    const unit = AGO_UNITS.find(function (u) { return seconds >= u[1]; });
    const count = Math.floor(seconds / unit[1]);
    return interpolate(AGO_WORDS[unit[0]](count), { count: count }, true);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    seconds = Math.max(0, Number(seconds));
    if (seconds < 10) return seconds.toFixed(1) + " s";
    const whole = Math.round(seconds);
    if (whole < 60) return whole + " s";
    if (whole < 3600) {
      const rest = whole % 60;
      return Math.floor(whole / 60) + " min" + (rest ? " " + rest + " s" : "");
    }
    const minutes = Math.floor((whole % 3600) / 60);
    return Math.floor(whole / 3600) + " h" + (minutes ? " " + minutes + " min" : "");
  }

  function refreshTimes(root) {
    (root || document).querySelectorAll("time[data-ago]").forEach(function (el) {
      const when = el.getAttribute("datetime");
      if (when) el.textContent = ago(when);
    });
  }

  // --- Generic DOM patching -------------------------------------------------------
  // Phase words in the page's language (compute.choices.PHASE_LABELS says the same); the
  // value stays in data-phase.
  const PHASE_LABELS = {
    Pending: gettext("Pending"), Provisioning: gettext("Provisioning"), Starting: gettext("Starting"),
    Running: gettext("Running"), Paused: gettext("Paused"), Stopping: gettext("Stopping"),
    Stopped: gettext("Stopped"), Migrating: gettext("Migrating"), Deleting: gettext("Deleting"),
    Failed: gettext("Failed"), Unknown: gettext("Unknown"), Scheduling: gettext("Scheduling"),
    Succeeded: gettext("Succeeded"), Cancelled: gettext("Cancelled"), Uploading: gettext("Uploading"),
    Importing: gettext("Importing"), Converting: gettext("Converting"), Ready: gettext("Ready"),
    Attached: gettext("Attached"), Restoring: gettext("Restoring"), Scaling: gettext("Scaling"),
    Degraded: gettext("Degraded"), Detaching: gettext("Detaching"), Exporting: gettext("Exporting"),
  };
  function phaseLabel(phase) { return PHASE_LABELS[phase] || phase; }

  function phaseBadge(el, phase) {
    el.textContent = phaseLabel(phase);
    el.dataset.phase = phase;
    if (el.classList.contains("badge") || el.dataset.liveBadge !== undefined) {
      BADGE_CLASSES.forEach(function (c) { el.classList.remove(c); });
      el.classList.add(PHASE_BADGES[phase] || "text-bg-secondary");
    }
  }

  // The Ready condition next to the phase; compute_tags.ready_display words it the same.
  function readyDisplay(phase, condition) {
    if (condition.status === "True" && (phase === "Running" || phase === "Migrating")) return { state: "ready", label: gettext("Ready") };
    if (phase === "Running") return { state: "waiting", label: condition.reason === "Rebooting" ? gettext("Rebooting…") : gettext("Booting…") };
    return { state: "none", label: "" };
  }

  function patchReady(el, phase, condition) {
    const shown = readyDisplay(phase, condition);
    el.dataset.ready = shown.state;
    el.textContent = shown.label;
    el.title = condition.message || "";
    el.hidden = !shown.label;
  }

  // A label map as the pages draw it (templates: vm_detail, workload_detail): one
  // "key=value" chip per label, or "none".
  function patchLabels(el, labels) {
    const keys = Object.keys(labels);
    el.replaceChildren();
    keys.forEach(function (key) {
      const chip = document.createElement("span");
      chip.className = "iso-kv";
      chip.textContent = key + "=" + labels[key];
      el.appendChild(chip);
    });
    if (!keys.length) {
      const none = document.createElement("span");
      none.className = "text-body-secondary";
      none.textContent = gettext("none");
      el.appendChild(none);
    }
  }

  // The closed "Edit labels" form starts from the new labels; an open one keeps what is
  // being typed there.
  function patchLabelsText(el, labels) {
    const form = el.closest("details");
    if (form && form.open) return;
    el.value = Object.keys(labels).sort().map(function (key) { return key + "=" + labels[key]; }).join("\n");
  }

  function objectsOf(data) {
    const sel = '[data-live-kind="' + CSS.escape(data.kind) + '"][data-live-name="' + CSS.escape(data.name) + '"]';
    return document.querySelectorAll(sel);
  }

  function within(root, selector) {
    const found = Array.from(root.querySelectorAll(selector));
    if (root.matches(selector)) found.push(root);
    return found;
  }

  // Screen readers hear a phase change once per object, however many places show it
  // (the polite live region in base.html; sighted users see the badges change).
  const KIND_LABELS = { vm: gettext("VM"), workload: gettext("Workload") };
  function announce(text) {
    const region = document.getElementById("iso-announcer");
    if (!region) return;
    // Clearing first makes a repeated message ("Running" again later) be read again.
    region.textContent = "";
    setTimeout(function () { region.textContent = text; }, 50);
  }

  function announcePhase(data, roots) {
    const state = data.state || {};
    if (!roots.length) return;
    const label = (KIND_LABELS[data.kind] || data.kind) + " " + data.name;
    if (data.deleted) { announce(interpolate(gettext("%(object)s was deleted"), { object: label }, true)); return; }
    if (state.phase === undefined) return;
    const badge = roots.map(function (root) { return within(root, '[data-live-field="phase"]')[0]; }).find(Boolean);
    if (badge && (badge.dataset.phase || badge.textContent.trim()) !== state.phase) announce(interpolate(gettext("%(object)s is now %(phase)s"), { object: label, phase: phaseLabel(state.phase) }, true));
  }

  function patchResource(data) {
    const state = data.state || {};
    const roots = Array.from(objectsOf(data));
    announcePhase(data, roots);
    roots.forEach(function (root) {
      if (data.deleted) { root.dataset.liveDeleted = "1"; }
      if (state.phase !== undefined) within(root, '[data-live-field="phase"]').forEach(function (el) { phaseBadge(el, state.phase); });
      if (state.message !== undefined) within(root, '[data-live-field="message"]').forEach(function (el) { el.textContent = state.message || ""; });
      const ready = Array.isArray(state.conditions) && state.conditions.find(function (c) { return c.type === "Ready"; });
      if (ready && state.phase !== undefined) {
        within(root, '[data-live-field="readyCondition"]').forEach(function (el) { patchReady(el, state.phase, ready); });
        within(root, '[data-live-field="readyMessage"]').forEach(function (el) { el.textContent = ready.message || ""; });
      }
      if (state.phaseChanged) {
        within(root, '[data-live-field="phaseChanged"]').forEach(function (el) {
          el.setAttribute("datetime", state.phaseChanged);
          el.title = state.phaseChanged.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
          if (el.dataset.ago !== undefined) el.textContent = ago(state.phaseChanged);
        });
      }
      if (state.labels && typeof state.labels === "object") {
        within(root, '[data-live-field="labels"]').forEach(function (el) { patchLabels(el, state.labels); });
        within(root, '[data-live-field="labelsText"]').forEach(function (el) { patchLabelsText(el, state.labels); });
      }
      if (Array.isArray(state.actions)) {
        within(root, "[data-live-action]").forEach(function (el) {
          el.hidden = state.actions.indexOf(el.dataset.liveAction) === -1;
        });
      }
    });
  }

  function toast(event) {
    const key = event.uid + ":" + event.count;
    if (toasted.has(key)) return;
    toasted.add(key);
    let box = document.getElementById("iso-toasts");
    if (!box) {
      box = document.createElement("div");
      box.id = "iso-toasts";
      box.className = "toast-container position-fixed bottom-0 end-0 p-3";
      box.setAttribute("aria-live", "polite");
      document.body.appendChild(box);
    }
    const el = document.createElement("div");
    el.className = "toast text-bg-warning border-0";
    el.setAttribute("role", "alert");
    el.dataset.testid = "live-toast";
    const body = document.createElement("div");
    body.className = "toast-body";
    const title = document.createElement("strong");
    title.textContent = event.reason + " · " + event.involvedObject.kind + "/" + event.involvedObject.name;
    const text = document.createElement("div");
    text.className = "small";
    text.textContent = event.message;
    body.append(title, text);
    el.appendChild(body);
    box.appendChild(el);
    if (window.bootstrap && window.bootstrap.Toast) {
      el.addEventListener("hidden.bs.toast", function () { el.remove(); });
      new window.bootstrap.Toast(el, { delay: 8000 }).show();
    } else {
      el.classList.add("show");
      setTimeout(function () { el.remove(); }, 8000);
    }
  }

  // --- Messages ---------------------------------------------------------------------
  function onMessage(frame) {
    switch (frame.type) {
      case "subscribed": {
        // The server answers subscribes in order: the oldest pending one is this.
        const asked = pending.shift();
        if (asked !== undefined) keyToStream.set(asked.key, frame.stream);
        const again = lastSeq.has(frame.stream); // subscribed before: a reconnect
        lastSeq.set(frame.stream, frame.seq);
        // Subscribed "since" a seq the stream has moved on from: the server sends the
        // resync itself.
        if (asked !== undefined && asked.since !== undefined && asked.since !== frame.seq) {
          emit("isotope:resync", { stream: frame.stream, reason: asked.since > frame.seq ? "reset" : "missed" });
          return;
        }
        // The seq as of which the page holds the whole stream, if it knows one; a first
        // subscribe holds it as of now (one with a baseline said it as its "since",
        // above, and the stream is still there).
        const have = held.get(frame.stream);
        if (have === frame.seq || (have === undefined && !again)) held.set(frame.stream, frame.seq);
        else resync(frame.stream, have !== undefined && have > frame.seq ? "reset" : "missed");
        return;
      }
      case "event":
      case "resource":
      case "metrics":
      case "notification": {
        const last = lastSeq.get(frame.stream);
        if (last !== undefined && frame.seq <= last && frame.seq !== 1) return; // already covered
        lastSeq.set(frame.stream, frame.seq);
        deliver(frame, false);
        // A coalesced metrics sample stands for seqs first_seq..seq of its stream.
        const first = typeof frame.first_seq === "number" ? frame.first_seq : frame.seq;
        if (last !== undefined && first > last + 1) resync(frame.stream, "gap", held.get(frame.stream));
        else if (last !== undefined && frame.seq === 1 && last > 1) resync(frame.stream, "reset");
        else if (last !== undefined && held.get(frame.stream) === last) held.set(frame.stream, frame.seq);
        return;
      }
      case "resync": {
        lastSeq.set(frame.stream, frame.seq);
        held.set(frame.stream, frame.seq);
        // A resync "since" a seq lists by name only (no data) the states stored before.
        (frame.data.resources || []).forEach(function (r) {
          if (r.data === undefined) return;
          deliver({ type: "resource", stream: frame.stream, seq: frame.seq, data: { tenant: frame.stream.split(".")[1], kind: r.kind, name: r.name, state: r.data } }, true);
        });
        emit("isotope:snapshot", frame);
        return;
      }
      case "unsubscribed":
        lastSeq.delete(frame.stream);
        held.delete(frame.stream);
        keyToStream.forEach(function (s, key) { if (s === frame.stream) { wanted.delete(key); keyToStream.delete(key); } });
        emit("isotope:unsubscribed", frame);
        return;
      case "error":
        if (frame.request === "subscribe") {
          const refused = pending.shift();
          if (refused !== undefined) wanted.delete(refused.key);
        }
        if (window.console) console.warn("isotope live:", frame.code, frame.message);
        emit("isotope:live-error", frame);
        return;
    }
  }

  // Whether a resource state is older than the one last applied for its object (same
  // uid, lower resourceVersion); remembers it otherwise.
  function outdated(data) {
    const state = data.state || {};
    const version = Number(state.resourceVersion);
    if (!state.uid || state.resourceVersion === undefined || state.resourceVersion === "" || isNaN(version)) return false;
    const key = data.tenant + "/" + data.kind + "/" + data.name;
    const seen = versions.get(key);
    if (seen && seen.uid === state.uid && seen.version > version) return true;
    versions.set(key, { uid: state.uid, version: version });
    return false;
  }

  function deliver(frame, fromResync) {
    const detail = { stream: frame.stream, seq: frame.seq, data: frame.data, resync: fromResync };
    if (frame.type === "resource") {
      if (outdated(frame.data)) return;
      patchResource(frame.data);
      emit("isotope:resource", detail);
    } else if (frame.type === "metrics") {
      emit("isotope:metrics", detail);
    } else if (frame.type === "notification") {
      emit("isotope:notification", detail);
    } else {
      if (frame.data.type === "Warning") toast(frame.data);
      emit("isotope:event", detail);
    }
  }

  // --- Connection -------------------------------------------------------------------
  function connect() {
    if (stopped) return;
    status("connecting");
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    // batch=1: messages that pile up within a tick come as one "batch" frame, in order.
    socket = new WebSocket(scheme + location.host + "/ws/?batch=1");
    socket.onopen = function () {
      attempt = 0;
      pending = [];
      status("live");
      wanted.forEach(function (target) { subscribe(target); });
    };
    socket.onmessage = function (message) {
      let frame;
      try { frame = JSON.parse(message.data); } catch (e) { return; }
      if (frame.type === "batch") (frame.messages || []).forEach(onMessage);
      else onMessage(frame);
    };
    socket.onclose = function (event) {
      socket = null;
      if (event.code === 4401) { stopped = true; status("offline"); return; }
      status("offline");
      const delay = Math.min(15000, 500 * Math.pow(2, attempt++)) * (0.75 + Math.random() * 0.5);
      clearTimeout(timer);
      timer = setTimeout(connect, delay);
    };
  }

  function declared() {
    const tenant = document.body.dataset.liveTenant;
    if (tenant) wanted.set(tenant, { tenant: tenant });
    if (document.body.dataset.liveNotifications !== undefined) wanted.set("notifications", { notifications: true });
    document.querySelectorAll('meta[name="isotope-live"]').forEach(function (meta) {
      const parts = (meta.content || "").split("/");
      if (parts.length >= 3) {
        const target = { tenant: parts[0], kind: parts[1], name: parts.slice(2).join("/") };
        wanted.set(keyOf(target), target);
      }
    });
  }

  function start() {
    document.querySelectorAll('[data-live-field="phase"]').forEach(function (el) {
      phaseBadge(el, (el.dataset.phase || el.textContent).trim());
    });
    declared();
    // The banner's live region is there before it has something to say (a region
    // added with its text in it is not read out).
    bannerBox();
    if (wanted.size) connect();
    refreshTimes();
    setInterval(refreshTimes, 5000);
  }

  window.Isotope = window.Isotope || {};
  window.Isotope.time = { ago: ago, duration: duration, refresh: refreshTimes };
  window.Isotope.phaseLabel = phaseLabel;
  window.Isotope.live = {
    subscribe: function (target) { subscribe(target); if (!socket && !stopped) connect(); },
    unsubscribe: unsubscribe,
    resync: resync,
    check: check,
    retrying: retrying,
    get streams() { return new Map(lastSeq); },
    PHASE_BADGES: PHASE_BADGES,
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
