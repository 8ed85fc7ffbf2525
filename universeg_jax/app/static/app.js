// The page of `universeg-jax app`: drives the JSON API of universeg_jax/app/server.py. No build step, no library.
"use strict";

const NO_EDIT = 0xffff; // an unpainted pixel of the edit layer
const $ = (id) => document.getElementById(id);
const app = {
  state: null,      // GET /api/state
  queryId: null,    // the query on screen
  slice: 0,         // its slice (volumes)
  view: null,       // GET /api/queries/{id}/view
  pred: null,       // Uint16Array: predicted label values at the threshold
  edits: null,      // Uint16Array: painted label values, NO_EDIT where unpainted
  w: 0, h: 0,
  colours: new Map(),
  painting: false, last: null,
  pendingSave: Promise.resolve(), saves: 0,
  viewSeq: 0, busy: 0, waiting: false, paintTouched: false,
};

// ---------------------------------------------------------------------------------------------------------------
// Messages and requests.

function message(text, kind = "error") {
  const box = $("messages");
  for (const old of box.children) if (old.dataset.text === text) old.remove();
  const div = document.createElement("div");
  div.className = `message ${kind}`;
  div.dataset.text = text;
  const span = document.createElement("span");
  span.textContent = (kind === "error" ? "Error: " : "Note: ") + text;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "✕";
  close.title = "dismiss";
  close.onclick = () => div.remove();
  div.append(span, close);
  box.append(div);
}

function clearMessages() { $("messages").replaceChildren(); }

function setBusy(delta) {
  app.busy += delta;
  showBusy();
}

// body[data-busy] is "0" when no request is in flight and no reload is waiting (tests wait for it).
function showBusy() {
  const busy = app.busy + (app.waiting ? 1 : 0);
  document.body.dataset.busy = String(busy);
  $("busy").hidden = busy === 0;
}

async function request(method, url, body) {
  setBusy(1);
  try {
    const init = { method };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "Content-Type": "application/json" };
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new Error(`the app does not answer (${err.message}); is it still running?`);
    }
    const data = (response.headers.get("Content-Type") || "").includes("json") ? await response.json() : null;
    if (!response.ok) throw new Error(data && data.error ? data.error : `${response.status} ${response.statusText}`);
    return data;
  } finally {
    setBusy(-1);
  }
}

// A user action: old messages go, a failure becomes a message; nothing on the page is lost.
async function act(fn) {
  clearMessages();
  try {
    await fn();
  } catch (err) {
    message(err.message);
  }
}

function showNotes(notes) { for (const note of notes || []) message(note, "note"); }

// ---------------------------------------------------------------------------------------------------------------
// Encoding of label maps: base64 of little-endian uint16.

function decode(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Uint16Array(bytes.buffer);
}

function encode(values) {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// ---------------------------------------------------------------------------------------------------------------
// State: support list, legend, query list.

function currentQuery() {
  return app.state ? app.state.queries.find((q) => q.id === app.queryId) || null : null;
}

function options() {
  return {
    threshold: $("threshold").value,
    support_size: $("support-size").value,
    ensemble: $("ensemble").value || "1",
    seed: $("seed").value || "0",
  };
}

function applyState(state) {
  app.state = state;
  showNotes(state.notes);
  const support = state.support;
  const count = $("support-count");
  count.dataset.count = String(support.count);
  count.textContent = `${support.count} example${support.count === 1 ? "" : "s"}`;
  $("support-list").replaceChildren(...support.examples.map((e) => {
    const li = document.createElement("li");
    li.dataset.id = e.id;
    li.className = e.origin;
    li.title = `${e.name}: ${e.shape.join("×")}, labels ${e.labels.join(", ") || "none"}`;
    const img = document.createElement("img");
    img.src = e.thumbnail;
    img.alt = e.name;
    const name = document.createElement("div");
    name.textContent = e.name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "✕";
    remove.title = "remove from the support set";
    remove.onclick = () => act(async () => {
      applyState(await request("DELETE", `/api/support/${e.id}`));
      await loadView();
    });
    li.append(img, name, remove);
    return li;
  }));

  app.colours = new Map(state.legend.map((entry) => [entry.value, hexToRgb(entry.colour)]));
  renderLegend();

  const select = $("probability-label");
  const chosen = select.value;
  select.replaceChildren(new Option("highest of all labels", "max"),
    ...state.legend.filter((e) => support.label_values.includes(e.value)).map((e) => new Option(e.name, String(e.value))));
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "max";

  $("query-count").textContent = String(state.queries.length);
  if (!currentQuery()) app.queryId = state.queries.length ? state.queries[0].id : null;
  renderQueries();
}

function renderQueries() {
  $("query-list").replaceChildren(...app.state.queries.map((q) => {
    const li = document.createElement("li");
    li.dataset.id = q.id;
    if (q.id === app.queryId) li.classList.add("selected");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = q.name;
    name.title = `${q.name}: ${q.shape.join("×")}`;
    const kind = document.createElement("span");
    kind.className = "badge";
    kind.textContent = q.volume ? `volume, ${q.slices} slices` : q.shape.join("×");
    li.append(name, kind);
    if (q.added.length) {
      const added = document.createElement("span");
      added.className = "badge in-support";
      added.textContent = q.volume ? `${q.added.length} in support` : "in support";
      li.append(added);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "✕";
    remove.title = "remove this query (its support examples stay)";
    remove.onclick = (event) => {
      event.stopPropagation();
      act(async () => {
        applyState(await request("DELETE", `/api/queries/${q.id}`));
        await loadView();
      });
    };
    li.append(remove);
    li.onclick = () => act(() => selectQuery(q.id));
    return li;
  }));
}

function renderLegend() {
  const legend = $("legend");
  const paint = Number($("paint-value").value);
  if (app.state.legend.length && !app.paintTouched && !app.colours.has(paint)) {
    $("paint-value").value = String(app.state.legend[0].value);
  }
  legend.replaceChildren(...app.state.legend.map((entry) => {
    const div = document.createElement("div");
    div.className = "entry";
    div.dataset.value = entry.value;
    if (entry.value === Number($("paint-value").value)) div.classList.add("active");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = entry.colour;
    const text = document.createElement("span");
    text.textContent = entry.name;
    div.title = "paint with this label";
    div.append(swatch, text);
    div.onclick = () => {
      $("paint-value").value = String(entry.value);
      app.paintTouched = true;
      $("tool-brush").checked = true;
      renderLegend();
    };
    return div;
  }));
}

/** The probability map, or nothing at all (an <img> without a picture shows a broken-image icon). */
function showProbability(url) {
  const img = $("probability");
  if (url) img.src = url;
  else img.removeAttribute("src");
  img.hidden = !url;
}

function hexToRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

async function refreshState() {
  applyState(await request("GET", "/api/state"));
}

// ---------------------------------------------------------------------------------------------------------------
// The query on screen.

async function selectQuery(id) {
  app.queryId = id;
  const q = currentQuery();
  app.slice = q && q.volume ? Math.floor(q.slices / 2) : 0;
  renderQueries();
  await loadView();
}

async function loadView() {
  const q = currentQuery();
  const sliceControl = $("slice-control");
  sliceControl.hidden = !(q && q.volume);
  if (q && q.volume) {
    $("slice").max = String(q.slices - 1);
    app.slice = Math.min(app.slice, q.slices - 1);
    $("slice").value = String(app.slice);
    $("slice-value").textContent = `${app.slice} / ${q.slices - 1} (${app.state.settings.axis})`;
  }
  if (!q) {
    app.view = null;
    $("view-info").textContent = app.state && app.state.support.count ? "Add query images to segment." :
      "Add a support set and a query to start.";
    $("view-info").className = "";
    for (const id of ["image-canvas", "overlay-canvas"]) $(id).getContext("2d").clearRect(0, 0, $(id).width, $(id).height);
    showProbability(null);
    return;
  }
  await app.pendingSave;
  const seq = ++app.viewSeq;
  const params = new URLSearchParams({ slice: app.slice, probability: $("probability-label").value, ...options() });
  let view;
  try {
    view = await request("GET", `/api/queries/${q.id}/view?${params}`);
  } catch (err) {
    if (seq === app.viewSeq) message(err.message);
    return;
  }
  if (seq !== app.viewSeq) return; // a newer request is on its way
  // The painting on screen is newer than the server's copy of the same slice (it is saved at each stroke's end).
  const same = app.view && app.edits && app.view.query === view.query && app.view.slice === view.slice &&
    app.w === view.width && app.h === view.height;
  app.view = view;
  app.w = view.width;
  app.h = view.height;
  app.pred = view.prediction ? decode(view.prediction) : new Uint16Array(view.width * view.height);
  if (!same) app.edits = view.edits ? decode(view.edits) : new Uint16Array(view.width * view.height).fill(NO_EDIT);
  const picture = new Image();
  picture.src = view.image;
  await picture.decode();
  if (seq !== app.viewSeq) return;
  for (const id of ["image-canvas", "overlay-canvas"]) {
    $(id).width = view.width;
    $(id).height = view.height;
  }
  $("image-canvas").getContext("2d").drawImage(picture, 0, 0);
  drawOverlay();
  showProbability(view.probability);
  const where = q.volume ? ` slice ${view.slice}` : "";
  const info = $("view-info");
  if (view.error) {
    info.textContent = `${view.name}${where}: ${view.error}`;
    info.className = "error-text";
  } else {
    const counts = view.labels.map((l) => `${l.name}: ${l.pixels} px`).join(", ");
    info.textContent = `${view.name}${where} (${view.width}×${view.height}), segmented with ` +
      `${view.support_count} support example${view.support_count === 1 ? "" : "s"}: ${counts}` +
      (view.added ? " · in the support set" : "");
    info.className = "";
  }
  document.body.dataset.viewQuery = String(view.query);
  document.body.dataset.viewVersion = String(view.version);
  document.body.dataset.viewSlice = String(view.slice);
  showNotes(view.notes);
}

// Each label in its legend colour: a light fill with a solid outline (painted pixels a little stronger).
function drawOverlay() {
  if (!app.view) return;
  const ctx = $("overlay-canvas").getContext("2d");
  const image = ctx.createImageData(app.w, app.h);
  const data = image.data;
  const w = app.w, h = app.h;
  const at = (i) => (app.edits[i] !== NO_EDIT ? app.edits[i] : app.pred[i]);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const v = at(i);
      if (!v) continue;
      const edge = (x > 0 && at(i - 1) !== v) || (x < w - 1 && at(i + 1) !== v) ||
        (y > 0 && at(i - w) !== v) || (y < h - 1 && at(i + w) !== v);
      const c = app.colours.get(v) || [255, 255, 255];
      data[4 * i] = c[0];
      data[4 * i + 1] = c[1];
      data[4 * i + 2] = c[2];
      data[4 * i + 3] = edge ? 255 : app.edits[i] !== NO_EDIT ? 130 : 80;
    }
  }
  ctx.putImageData(image, 0, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Brush and eraser.

function pixelOf(event) {
  const rect = $("overlay-canvas").getBoundingClientRect();
  return [(event.clientX - rect.left) * app.w / rect.width, (event.clientY - rect.top) * app.h / rect.height,
    app.w / rect.width];
}

function paintDisc(cx, cy, r, value) {
  const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(app.w - 1, Math.ceil(cx + r));
  const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(app.h - 1, Math.ceil(cy + r));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r) app.edits[y * app.w + x] = value;
    }
  }
}

function paintTo(event) {
  const [x, y, scale] = pixelOf(event);
  const r = Math.max(0.5, Number($("brush-size").value) * scale);
  const erase = $("tool-eraser").checked;
  const value = erase ? 0 : Number($("paint-value").value);
  if (!erase && !(value >= 1 && value <= 65534 && Number.isInteger(value))) {
    app.painting = false;
    message("the label to paint must be a whole number from 1 to 65534");
    return;
  }
  const [px, py] = app.last || [x, y];
  const steps = Math.max(1, Math.ceil(Math.hypot(x - px, y - py) / Math.max(0.5, r / 2)));
  for (let s = 1; s <= steps; s++) paintDisc(px + (x - px) * s / steps, py + (y - py) * s / steps, r, value);
  app.last = [x, y];
  drawOverlay();
}

function saveEdits() {
  const q = currentQuery();
  if (!q || !app.edits) return;
  const body = { slice: app.slice, edits: app.edits.some((v) => v !== NO_EDIT) ? encode(app.edits) : "" };
  const painted = Number($("paint-value").value);
  app.pendingSave = app.pendingSave
    .then(() => request("POST", `/api/queries/${q.id}/edits`, body))
    .then(async () => {
      document.body.dataset.saved = String(++app.saves);
      if (!$("tool-eraser").checked && !app.colours.has(painted)) await refreshState(); // a new label: legend
    })
    .catch((err) => message(`your correction was not saved: ${err.message}`));
}

const overlay = $("overlay-canvas");
overlay.addEventListener("pointerdown", (event) => {
  if (!app.view || event.button !== 0) return;
  overlay.setPointerCapture(event.pointerId);
  app.painting = true;
  app.last = null;
  paintTo(event);
});
overlay.addEventListener("pointermove", (event) => { if (app.painting) paintTo(event); });
for (const type of ["pointerup", "pointercancel"]) {
  overlay.addEventListener(type, () => {
    if (!app.painting) return;
    app.painting = false;
    saveEdits();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Buttons and controls.

const ACCEPTED = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz"];
const accepted = (file) => ACCEPTED.some((s) => file.name.toLowerCase().endsWith(s));

function chosenFiles(id, folderId) {
  // Files picked one by one go to the server as they are (it names what it cannot read); a folder's other
  // files (notes, hidden files) are left out.
  return [...$(id).files, ...[...$(folderId).files].filter(accepted)];
}

function clearInputs(...ids) { for (const id of ids) $(id).value = ""; }

for (const button of document.querySelectorAll("button.folder")) {
  button.onclick = () => $(button.dataset.for).click();
}

$("upload-support").onclick = () => act(async () => {
  const form = new FormData();
  for (const f of chosenFiles("support-images", "support-images-folder")) form.append("images", f, f.name);
  for (const f of chosenFiles("support-labels", "support-labels-folder")) form.append("labels", f, f.name);
  applyState(await request("POST", "/api/support", form));
  clearInputs("support-images", "support-images-folder", "support-labels", "support-labels-folder");
  await loadView();
});

$("upload-queries").onclick = () => act(async () => {
  const form = new FormData();
  for (const f of chosenFiles("query-files", "query-folder")) form.append("files", f, f.name);
  const state = await request("POST", "/api/queries", form);
  clearInputs("query-files", "query-folder");
  applyState(state);
  if (state.added && state.added.length && !app.view) await selectQuery(state.added[0]);
  else await loadView();
});

$("add-to-support").onclick = () => act(async () => {
  const q = currentQuery();
  if (!q || !app.edits) throw new Error("choose a query first");
  await app.pendingSave;
  const state = await request("POST", `/api/queries/${q.id}/add`,
    { slice: app.slice, edits: app.edits.some((v) => v !== NO_EDIT) ? encode(app.edits) : "", ...options() });
  applyState(state);
  if (!q.volume) { // on to the next query that is not in the support set yet
    const queries = state.queries;
    const at = queries.findIndex((other) => other.id === q.id);
    const next = [...queries.slice(at + 1), ...queries.slice(0, at)].find((other) => !other.added.length);
    if (next) {
      await selectQuery(next.id);
      return;
    }
  }
  await loadView();
});

$("clear-edits").onclick = () => act(async () => {
  if (!app.edits) return;
  app.edits.fill(NO_EDIT);
  drawOverlay();
  saveEdits();
  await app.pendingSave;
});

async function download(url) {
  await app.pendingSave;
  setBusy(1);
  try {
    const response = await fetch(url);
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      throw new Error(data && data.error ? data.error : `${response.status} ${response.statusText}`);
    }
    const blob = await response.blob();
    const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = match ? match[1] : "download";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  } finally {
    setBusy(-1);
  }
}

function queryDownload(kind) {
  return () => act(async () => {
    const q = currentQuery();
    if (!q) throw new Error("choose a query first");
    await download(`/api/queries/${q.id}/${kind}?${new URLSearchParams(options())}`);
  });
}

$("download-mask").onclick = queryDownload("mask");
$("download-probabilities").onclick = queryDownload("probabilities");
$("download-support").onclick = () => act(() => download("/api/support.zip"));

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    app.waiting = true;
    showBusy();
    timer = setTimeout(() => {
      app.waiting = false;
      showBusy();
      fn();
    }, ms);
  };
}

const reload = debounce(() => loadView(), 150);
$("threshold").addEventListener("input", () => {
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
  reload();
});
for (const id of ["support-size", "ensemble", "seed", "probability-label"]) $(id).addEventListener("change", reload);
$("slice").addEventListener("input", () => {
  app.slice = Number($("slice").value);
  const q = currentQuery();
  if (q) $("slice-value").textContent = `${app.slice} / ${q.slices - 1} (${app.state.settings.axis})`;
  reload();
});
$("paint-value").addEventListener("input", () => {
  app.paintTouched = true;
  renderLegend();
});

act(async () => {
  await refreshState();
  await loadView();
});
