// Images page: upload with tus-js-client (resumable, chunked, retried after network
// errors), live phase/progress of every image from the websocket (live.js dispatches
// `isotope:resource`), and rows for images that appear while the page is open.
(function () {
  "use strict";

  const tbody = document.querySelector("[data-image-rows]");
  const template = document.getElementById("image-row-template");
  const tenant = document.body.dataset.liveTenant;
  const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
  const RETRY_DELAYS = [0, 1000, 2000, 4000, 8000, 15000, 30000];
  const TERMINATE_RETRY_DELAYS = [0, 1000, 3000];

  function csrf() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "?";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
  }

  // --- Rows ---------------------------------------------------------------------------
  function rowOf(name) {
    return tbody && tbody.querySelector('tr[data-image="' + CSS.escape(name) + '"]');
  }

  function ensureRow(name) {
    let row = rowOf(name);
    if (row || !template || !tbody || !NAME.test(name)) return row;
    row = template.content.querySelector("tr").cloneNode(true);
    named(row, name);
    tbody.prepend(row);
    const empty = document.querySelector('[data-testid="image-empty"]');
    if (empty) empty.hidden = true;
    return row;
  }

  // The template row's "__name__" placeholders, in its text and attributes, become
  // ``name``: set as text and attribute values, never parsed as HTML.
  function named(root, name) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
    for (let node = root; node; node = walker.nextNode()) {
      if (node.nodeType === Node.TEXT_NODE) {
        if (node.data.indexOf("__name__") !== -1) node.data = node.data.split("__name__").join(name);
        continue;
      }
      for (const attribute of Array.from(node.attributes)) {
        if (attribute.value.indexOf("__name__") !== -1) {
          node.setAttribute(attribute.name, attribute.value.split("__name__").join(name));
        }
      }
    }
  }

  // A row cloned from the template says "URL"; an uploaded image says "Upload".
  function showSource(row, state) {
    const icon = row.querySelector("[data-image-source] i");
    if (state.source === "upload" && icon && icon.classList.contains("bi-cloud-download")) {
      icon.className = "bi bi-upload";
      icon.nextSibling.textContent = " " + gettext("Upload");
    }
  }

  function showProgress(row, state) {
    showSource(row, state);
    const bar = row.querySelector("[data-image-progress]");
    const text = row.querySelector("[data-image-progress-text]");
    const progress = state.progress || {};
    const busy = ["Uploading", "Pending", "Importing", "Converting"].indexOf(state.phase) !== -1;
    if (bar) {
      bar.hidden = !busy;
      const percent = progress.percent === null || progress.percent === undefined ? 0 : progress.percent;
      bar.setAttribute("aria-valuenow", String(percent));
      bar.firstElementChild.style.width = percent + "%";
    }
    if (!text) return;
    if (state.phase === "Ready") {
      const parts = [];
      if (state.virtualSizeBytes) parts.push(size(state.virtualSizeBytes) + " disk");
      if (state.sizeBytes) parts.push(size(state.sizeBytes) + " stored");
      text.textContent = parts.join(" · ");
    } else if (state.phase === "Converting") {
      text.textContent = interpolate(gettext("%s converted"), [(progress.percent || 0) + " %"]);
    } else if (busy && progress.bytes) {
      let line = size(progress.bytes) + (progress.total ? " of " + size(progress.total) : "");
      if (progress.rate) line += " · " + size(progress.rate) + "/s";
      text.textContent = line;
    } else if (state.phase === "Failed") {
      text.textContent = "";
    }
    row.querySelectorAll("[data-image-ready-only]").forEach(function (el) { el.hidden = state.phase !== "Ready"; });
    row.querySelectorAll("[data-image-resume]").forEach(function (el) { el.hidden = state.phase !== "Uploading"; });
    const message = row.querySelector('[data-live-field="message"]');
    if (message) { message.hidden = !state.message; message.title = state.message || ""; }
  }

  document.addEventListener("isotope:resource", function (event) {
    const data = event.detail && event.detail.data;
    if (!data || data.kind !== "image") return;
    if (data.deleted) {
      const row = rowOf(data.name);
      if (row) row.remove();
      return;
    }
    // Rows are added for images that appear live, never from a resync snapshot (which may
    // hold images this page's list does not show).
    const row = event.detail.resync ? rowOf(data.name) : ensureRow(data.name);
    if (!row) return;

    const phase = row.querySelector('[data-live-field="phase"]');
    if (phase && data.state && phase.dataset.phase !== data.state.phase) {
      // A row created here after live.js patched the others: set the badge ourselves.
      phase.textContent = window.Isotope.phaseLabel ? window.Isotope.phaseLabel(data.state.phase) : data.state.phase;
      phase.dataset.phase = data.state.phase;
    }
    const message = row.querySelector('[data-live-field="message"]');
    if (message && data.state) message.textContent = data.state.message || "";
    showProgress(row, data.state || {});
  });

  // --- Upload -----------------------------------------------------------------------------
  const form = document.getElementById("image-upload");
  if (!form || !window.tus) return;
  const fileInput = form.querySelector("input[type=file]");
  const nameInput = form.querySelector("[name=name]");
  const statusBox = form.querySelector("[data-upload-status]");
  const bar = statusBox.querySelector(".progress-bar");
  const text = form.querySelector("[data-upload-text]");
  const rateText = form.querySelector("[data-upload-rate]");
  const errorBox = form.querySelector("[data-upload-error]");
  const note = form.querySelector("[data-upload-note]");
  const submit = form.querySelector("[type=submit]");
  const cancel = form.querySelector("[data-upload-cancel]");
  const chunkSize = parseInt(form.dataset.chunkBytes, 10) || 8 * 1024 * 1024;
  let current = null; // the tus upload under way
  let starting = false; // the image being created, its upload not begun yet
  let cancelStart = false; // Cancel clicked meanwhile

  function fieldErrors(errors) {
    form.querySelectorAll("[data-error]").forEach(function (el) { el.textContent = ""; });
    form.querySelectorAll(".is-invalid").forEach(function (el) { el.classList.remove("is-invalid"); });
    Object.keys(errors || {}).forEach(function (field) {
      const key = field.indexOf("spec.source") === 0 || field === "spec.sizeBytes" ? "file" : field;
      const el = form.querySelector('[data-error="' + key + '"]') || errorBox;
      el.textContent = (errors[field] || []).join(" ");
      el.hidden = false;
      const input = key === "file" ? fileInput : key === "metadata.name" ? nameInput : form.querySelector("[name=sha256]");
      if (input && el !== errorBox) input.classList.add("is-invalid");
    });
  }

  function fail(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    bar.classList.remove("progress-bar-animated");
    busy(false);
  }

  // A cancelled upload's image dropped (tus terminate: DELETE of its upload URL, tried
  // for a few seconds, not the minute an upload's chunks are). When that fails the bytes
  // have stopped but the image is still there, and the page says so; tus's error names
  // the request and its status, for the console.
  function drop(url) {
    statusBox.hidden = false;
    return window.tus.Upload.terminate(url, { headers: { "X-CSRFToken": csrf() }, retryDelays: TERMINATE_RETRY_DELAYS })
      .then(function () {
        text.textContent = gettext("Upload cancelled.");
        busy(false);
      }, function (error) {
        if (window.console) console.warn("image upload: terminate failed:", error);
        text.textContent = gettext("Upload stopped.");
        fail(gettext("The upload stopped, but the server could not drop the image: delete it from the list."));
      });
  }

  function busy(on) {
    submit.disabled = on;
    cancel.hidden = !on;
    fileInput.disabled = on;
    nameInput.disabled = on;
  }

  function problemText(body, fallback) {
    if (!body) return fallback;
    try {
      const problem = typeof body === "string" ? JSON.parse(body) : body;
      return problem.detail || fallback;
    } catch (e) {
      return fallback;
    }
  }

  // Send ``file`` to an image's tus upload URL; resumes from the offset the server has.
  function sendFile(file, uploadUrl, label) {
    statusBox.hidden = false;
    errorBox.hidden = true;
    bar.classList.add("progress-bar-animated");
    busy(true);
    let last = { t: performance.now(), bytes: 0 };
    let resumes = 0;
    note.hidden = true;
    const upload = new window.tus.Upload(file, {
      uploadUrl: new URL(uploadUrl, location.href).href,
      chunkSize: chunkSize,
      retryDelays: RETRY_DELAYS,
      headers: { "X-CSRFToken": csrf() },
      storeFingerprintForResuming: false,
      removeFingerprintOnSuccess: true,
      onShouldRetry: function (error, attempt, options) {
        const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
        // Refusals (bad size, permission, gone) are final; network trouble and conflicts retry.
        if (status === 409 || status === 423 || status === 0 || status >= 500) {
          resumes += 1;
          note.textContent = gettext("The connection dropped; resumed from the server's offset") +
            (resumes > 1 ? " (" + resumes + " times)." : ".");
          note.hidden = false;
          return true;
        }
        return false;
      },
      onProgress: function (sent, total) {
        const percent = total ? Math.floor((sent / total) * 100) : 0;
        bar.style.width = percent + "%";
        statusBox.querySelector(".progress").setAttribute("aria-valuenow", String(percent));
        text.textContent = interpolate(gettext("%(label)s: %(sent)s of %(total)s (%(percent)s)"), { label: label, sent: size(sent), total: size(total), percent: percent + " %" }, true);
        const now = performance.now();
        if (now - last.t > 700) {
          rateText.textContent = size(((sent - last.bytes) * 1000) / (now - last.t)) + "/s";
          last = { t: now, bytes: sent };
        }
      },
      onSuccess: function () {
        bar.style.width = "100%";
        bar.classList.remove("progress-bar-animated");
        text.textContent = interpolate(gettext("%(label)s: uploaded — checking and converting (see the list)."), { label: label }, true);
        rateText.textContent = "";
        busy(false);
        form.reset();
        current = null;
      },
      onError: function (error) {
        const response = error.originalResponse;
        fail(problemText(response && response.getBody(), gettext("The upload failed: ") + error.message));
        current = null;
      },
    });
    current = upload;
    upload.start();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    fieldErrors({});
    errorBox.hidden = true;
    const file = fileInput.files && fileInput.files[0];
    if (!file) { fieldErrors({ file: [gettext("Choose a file.")] }); return; }
    const name = nameInput.value.trim();
    const body = {
      metadata: { name: name },
      spec: { source: { upload: { sizeBytes: file.size } }, displayName: file.name.slice(0, 100) },
    };
    const sha = form.querySelector("[name=sha256]").value.trim();
    if (sha) body.spec.sha256 = sha;
    busy(true);
    starting = true;
    cancelStart = false;
    fetch(form.dataset.api, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      starting = false;
      if (!result.ok) {
        busy(false);
        fieldErrors(result.data.errors);
        if (!result.data.errors) fail(result.data.detail || gettext("The upload was refused."));
        return;
      }
      const image = result.data;
      if (cancelStart) {
        // Cancelled while the image was being created: it is dropped before any byte.
        drop(new URL(image.status.upload.url, location.href).href);
        return;
      }
      const row = ensureRow(image.metadata.name);
      if (row) showProgress(row, { phase: image.status.phase, message: image.status.message, progress: image.status.progress, source: "upload" });
      sendFile(file, image.status.upload.url, image.metadata.name);
    }).catch(function (error) { starting = false; fail(gettext("The upload could not start: ") + error.message); });
  });

  cancel.addEventListener("click", function () {
    if (starting) {
      // The image is still being created: cancelled as soon as it exists.
      cancelStart = true;
      statusBox.hidden = false;
      text.textContent = gettext("Cancelling…");
      return;
    }
    if (!current) return;
    // No more bytes; then the server drops the image, its bytes and its storage charge.
    text.textContent = gettext("Cancelling…");
    const url = current.url;
    current.abort(false).then(function () { drop(url); });
    current = null;
  });

  // "Resume upload" on an image still Uploading (e.g. after the tab was closed):
  // choose the same file again and the upload continues where the server stopped.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-image-resume]");
    if (!button) return;
    if (current || starting) {
      // One upload at a time: a second would write to the same image as the first.
      errorBox.textContent = gettext("Wait for the upload under way to end, or cancel it, first.");
      errorBox.hidden = false;
      return;
    }
    const picker = document.createElement("input");
    picker.type = "file";
    picker.addEventListener("change", function () {
      if (picker.files && picker.files[0]) sendFile(picker.files[0], button.dataset.uploadUrl, button.dataset.imageResume);
    });
    picker.click();
  });

  // Dropping a file on the drop zone chooses it.
  const zone = form.querySelector("[data-dropzone]");
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) { event.preventDefault(); zone.classList.add("iso-over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("iso-over"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer.files.length) fileInput.files = event.dataTransfer.files;
    fileInput.dispatchEvent(new Event("change"));
  });
  fileInput.addEventListener("change", function () {
    const file = fileInput.files && fileInput.files[0];
    if (file && !nameInput.value) {
      nameInput.value = file.name.toLowerCase().replace(/\.(qcow2|raw|img)$/, "").replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
    }
  });
})();
