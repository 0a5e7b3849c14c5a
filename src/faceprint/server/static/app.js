// faceprint web page: plain JS over the HTTP API (/api/v1), no external code.
// Every text from the server is put in the page with textContent, never as HTML.
"use strict";

const API = "/api/v1";
const PAGE_SIZE = 12;
const state = { key: localStorage.getItem("faceprint-key") || "", jobId: null, offset: 0, total: 0, uploads: {} };

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

async function call(path, options = {}) {
  const headers = Object.assign({ Authorization: `Key ${state.key}` }, options.headers || {});
  const response = await fetch(path.startsWith("/") ? path : `${API}/${path}`, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      const body = await response.json();
      message = `${body.error.code}: ${body.error.message}`;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  if (options.raw) return response;
  return response.status === 204 ? null : response.json();
}

async function uploadFile(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const record = await call("storage/", { method: "POST", body: form });
  state.uploads[record.uri] = record;
  return record;
}

// --- key --------------------------------------------------------------------------------------------
async function useKey(event) {
  if (event) event.preventDefault();
  state.key = $("api-key").value.trim() || state.key;
  const status = $("key-status");
  try {
    await call("jobs/?limit=1");
    localStorage.setItem("faceprint-key", state.key);
    status.textContent = "key accepted";
    status.className = "status ok";
    await loadGalleries();
  } catch (error) {
    status.textContent = `key refused (${error.message})`;
    status.className = "status bad";
  }
}

// --- galleries ----------------------------------------------------------------------------------------
async function loadGalleries() {
  const page = await call("models/?limit=1000");
  const list = $("gallery-list");
  const select = $("enroll-gallery");
  const boxes = $("job-galleries");
  list.replaceChildren();
  select.replaceChildren();
  boxes.replaceChildren(el("legend", { text: "Galleries to search" }));
  for (const gallery of page.data) {
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    list.appendChild(el("li", { text: `${gallery.name}: ${plural(gallery.persons, "person")}, ${plural(gallery.templates, "photo")}` }));
    select.appendChild(el("option", { value: gallery.id, text: gallery.name }));
    const box = el("input", { type: "checkbox", value: gallery.id, name: "gallery" });
    box.checked = true;
    boxes.appendChild(el("label", {}, [box, document.createTextNode(` ${gallery.name}`)]));
  }
}

async function createGallery(event) {
  event.preventDefault();
  const name = $("gallery-name").value.trim();
  if (!name) return;
  try {
    await call("models/", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }) });
    $("gallery-name").value = "";
    await loadGalleries();
  } catch (error) { toast(error.message); }
}

async function enrollPerson(event) {
  event.preventDefault();
  const status = $("enroll-status");
  const gallery = $("enroll-gallery").value;
  const name = $("person-name").value.trim();
  const files = [...$("enroll-files").files];
  if (!gallery || !name || !files.length) { status.textContent = "pick a gallery, a name and photos"; return; }
  status.textContent = "uploading…";
  try {
    const sources = [];
    for (const file of files) sources.push((await uploadFile(file)).uri);
    const report = await call(`models/${encodeURIComponent(gallery)}/persons/`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name, sources }),
    });
    const skipped = report.skipped.map((s) => `${state.uploads[s.image]?.filename || s.image}: ${s.code}`);
    status.textContent = `enrolled ${report.templates_added} photo(s) of ${name}` + (skipped.length ? `; skipped ${skipped.join(", ")}` : "");
    status.className = "status ok";
    await loadGalleries();
  } catch (error) { status.textContent = error.message; status.className = "status bad"; }
}

// --- recognition jobs ------------------------------------------------------------------------------------
async function startJob(event) {
  event.preventDefault();
  const files = [...$("media-files").files];
  if (!files.length) { toast("choose images or videos first"); return; }
  $("start-job").disabled = true;
  try {
    const sources = [];
    for (const file of files) sources.push((await uploadFile(file)).uri);
    const models = [...document.querySelectorAll("#job-galleries input:checked")].map((box) => box.value);
    const params = {
      models,
      cluster_unknowns: $("cluster-unknowns").checked,
      index_unknowns: $("index-unknowns").checked,
      face_detection_scale: Number($("face-scale").value || 600),
      enable_top_k: $("enable-top-k").checked,
      top_k: Number($("top-k").value || 3),
    };
    if ($("max-distance").value !== "") params.max_distance = Number($("max-distance").value);
    const job = await call("jobs/", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sources, modules: { face_recognition: params }, tag: "web" }),
    });
    state.jobId = job.id;
    state.offset = 0;
    $("results").replaceChildren();
    $("job-panel").hidden = false;
    $("job-id").textContent = job.id;
    watch(job.id, "job", async () => { await showResults(); });
  } catch (error) { toast(error.message); } finally { $("start-job").disabled = false; }
}

function watch(jobId, prefix, onDone) {
  const tick = async () => {
    let job;
    try { job = await call(`jobs/${jobId}/`); } catch (error) { toast(error.message); return; }
    $(`${prefix}-state`).textContent = `${job.state} (${Math.round(job.progress * 100)}%)`;
    const bar = $(`${prefix}-progress`);
    bar.value = Math.max(Number(bar.value), job.progress);
    if (prefix === "job") {
      $("job-errors").replaceChildren(...job.errors.map((e) => el("div", { text: `${state.uploads[e.source]?.filename || e.source || "job"}: ${e.code}: ${e.message}` })));
    }
    if (["completed", "failed", "cancelled"].includes(job.state)) { await onDone(job); return; }
    setTimeout(tick, 500);
  };
  tick();
}

function boxOf(item) {
  const detection = (item.detections || [])[0];
  return detection && detection.data ? detection.data : null;
}

async function imageBitmap(uri) {
  const id = uri.replace("storage://", "");
  const cache = imageBitmap.cache || (imageBitmap.cache = {});
  if (!cache[id]) {
    cache[id] = call(`storage/${id}/file`, { raw: true }).then((r) => r.blob()).then((blob) => createImageBitmap(blob));
  }
  return cache[id];
}

function drawBox(canvas, picture, box) {
  canvas.width = picture.width;
  canvas.height = picture.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(picture, 0, 0);
  if (!box) return;
  ctx.strokeStyle = "#ffd400";
  ctx.lineWidth = Math.max(2, picture.width / 100);
  ctx.strokeRect(box.x * picture.width, box.y * picture.height, box.w * picture.width, box.h * picture.height);
}

async function card(item) {
  const meta = item.meta || {};
  const node = el("div", { className: "card", "data-media": item.media_type });
  const canvas = el("canvas", { "aria-label": "face" });
  node.appendChild(canvas);
  try {
    if (item.media_type === "image") {
      drawBox(canvas, await imageBitmap(item.source), boxOf(item));
    } else if (item.thumbnail && item.thumbnail.image) {
      const blob = await (await fetch(`data:image/jpeg;base64,${item.thumbnail.image}`)).blob();
      drawBox(canvas, await createImageBitmap(blob), null);
    }
  } catch (error) { node.appendChild(el("div", { className: "meta", text: `no picture (${error.message})` })); }
  const person = meta.person || "unknown";
  node.appendChild(el("div", { className: person.toLowerCase().startsWith("unknown") ? "person unknown" : "person", text: person }));
  const similarity = meta.mean_similarity === null || meta.mean_similarity === undefined ? "–" : meta.mean_similarity.toFixed(3);
  node.appendChild(el("div", { className: "meta", text: `similarity ${similarity}` + (meta.probability != null ? `, P(same) ${(meta.probability * 100).toFixed(1)}%` : "") }));
  const name = state.uploads[item.source]?.filename || item.source;
  if (item.media_type === "video") {
    node.appendChild(el("div", { className: "meta time", text: `${name}: ${item.time_start.toFixed(2)}–${item.time_end.toFixed(2)} s (${item.tc_start} – ${item.tc_end})` }));
  } else {
    node.appendChild(el("div", { className: "meta", text: name }));
  }
  const top = meta.closest_k_persons || [];
  if (top.length) node.appendChild(el("ol", { className: "topk" }, top.map((p) => el("li", { text: `${p.person} ${p.similarity.toFixed(3)}` }))));
  return node;
}

async function showResults() {
  if (!state.jobId) return;
  const page = await call(`jobs/${state.jobId}/detailed-results/?limit=${PAGE_SIZE}&offset=${state.offset}`);
  state.total = page.total;
  const cards = [];
  for (const item of page.data) cards.push(await card(item));
  $("results").replaceChildren(...cards);
  if (!page.total) $("results").appendChild(el("div", { className: "meta", text: "no faces found" }));
  $("pager").hidden = page.total <= PAGE_SIZE;
  $("page-info").textContent = `${page.offset + 1}–${page.offset + page.data.length} of ${page.total}`;
  $("prev-page").disabled = page.prev === null;
  $("next-page").disabled = page.next === null;
}

function turn(step) {
  state.offset = Math.max(0, state.offset + step * PAGE_SIZE);
  showResults().catch((error) => toast(error.message));
}

// --- pairs jobs -------------------------------------------------------------------------------------------
async function startPairs(event) {
  event.preventDefault();
  const files = [...$("pairs-files").files];
  if (!files.length) { toast("choose dataset archives first"); return; }
  $("start-pairs").disabled = true;
  try {
    const sources = [];
    for (const file of files) sources.push((await uploadFile(file)).uri);
    const job = await call("jobs/", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sources, modules: { face_pairs: { details: $("pairs-details").checked } }, tag: "web-pairs" }),
    });
    $("pairs-panel").hidden = false;
    $("pairs-id").textContent = job.id;
    $("pairs-download").hidden = true;
    watch(job.id, "pairs", async (done) => {
      const lines = done.result.summary.map((s) => `${state.uploads[s.source]?.filename || s.source}: ${s.processing.scored}/${s.processing.rows} pairs scored (${s.processing.status})`);
      lines.push(...done.errors.map((e) => `${e.code}: ${e.message}`));
      $("pairs-summary").replaceChildren(...lines.map((text) => el("div", { text })));
      if (done.state === "completed") {
        const blob = await (await call(`jobs/${done.id}/result`, { raw: true })).blob();
        const link = $("pairs-download");
        link.href = URL.createObjectURL(blob);
        link.download = `faceprint-pairs-${done.id}.tar.gz`;
        link.hidden = false;
      }
    });
  } catch (error) { toast(error.message); } finally { $("start-pairs").disabled = false; }
}

// --- wiring ---------------------------------------------------------------------------------------------------
$("key-form").addEventListener("submit", useKey);
$("gallery-form").addEventListener("submit", createGallery);
$("enroll-form").addEventListener("submit", enrollPerson);
$("job-form").addEventListener("submit", startJob);
$("pairs-form").addEventListener("submit", startPairs);
$("prev-page").addEventListener("click", () => turn(-1));
$("next-page").addEventListener("click", () => turn(1));
if (state.key) { $("api-key").value = state.key; useKey(); }
