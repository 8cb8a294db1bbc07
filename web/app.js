// imgsearch web page: search as you type, browse (videos at their matching moments), "more like this",
// search by a dropped or pasted image, +/− terms, words the images show, folder and date filters, and
// a live status panel.
// Plain JS, no build step.
"use strict";

const PAGE = 60;          // results per request
const STATUS_EVERY = 3000; // ms between status polls

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c);
  return node;
};

const state = {
  terms: [],        // extra terms: {kind: "text"|"image"|"id"|"contains", text?, data?, id?, time?, label?, weight: ±1}
  offset: 0,
  seq: 0,           // request sequence: stale answers are dropped
  controller: null,
  lastQuery: null,  // the body of the last search, for "More results"
};

// ---- searching ----

// SigLIP models give a text query's results the model's own match probability; CLIP's have the cosine.
function percent(p) { return `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 1 : 0)}%`; }
function scoreText(r) { return r.probability !== undefined ? `${r.score.toFixed(3)} · ${percent(r.probability)}` : r.score.toFixed(3); }

// A video's moment as players show it: 0:07, 1:04, 1:02:03.
function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const mm = Math.floor(s / 60) % 60, ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

// A thumbnail URL at a size; a video's already names its frame (?t=…).
function sized(url, size) { return `${url}${url.includes("?") ? "&" : "?"}size=${size}`; }
function frameUrl(id, time, size) { return `/api/images/${id}/thumbnail?t=${time}&size=${size}`; }

function currentTerms() {
  const terms = [];
  const text = $("q").value.trim();
  if (text) terms.push({ text, weight: 1 });
  for (const t of state.terms) {
    if (t.kind === "text" && t.text.trim()) terms.push({ text: t.text.trim(), weight: t.weight });
    if (t.kind === "contains" && /[\p{L}\p{N}]/u.test(t.text)) terms.push({ contains: t.text.trim(), weight: t.weight });
    if (t.kind === "image") terms.push({ image: t.data, weight: t.weight });
    if (t.kind === "id") terms.push(t.time !== undefined ? { id: t.id, time: t.time, weight: t.weight } : { id: t.id, weight: t.weight });
  }
  return terms;
}

function filters() {
  const f = {};
  const under = $("under").value.trim();
  if (under) f.under = under;
  if ($("after").value) f.after = $("after").value;
  if ($("before").value) f.before = $("before").value;
  return f;
}

function showMessage(text, isError = false) {
  const m = $("message");
  m.textContent = text;
  m.classList.toggle("error", isError);
}

async function search({ append = false } = {}) {
  const terms = currentTerms();
  saveToUrl();
  if (!terms.length) {
    state.controller?.abort();
    $("results").replaceChildren();
    $("more").hidden = true;
    showMessage("Type what you are looking for, or drop or paste an image.");
    return;
  }
  if (!append) state.offset = 0;
  const body = { terms, k: PAGE, offset: state.offset, ...filters() };
  state.lastQuery = body;
  const seq = ++state.seq;
  state.controller?.abort();
  state.controller = new AbortController();
  if (!append) showMessage("Searching…");
  let answer;
  try {
    const res = await fetch("/api/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: state.controller.signal,
    });
    answer = await res.json();
    if (!res.ok) throw new Error(answer.error || res.statusText);
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    showMessage(err.message, true);
    return;
  }
  if (seq !== state.seq) return;
  render(answer.results, append);
  const shown = $("results").children.length;
  showMessage(shown ? `${shown} result${shown === 1 ? "" : "s"} · ${answer.took_ms} ms` : "No matches.");
  $("more").hidden = answer.results.length < PAGE || state.offset + PAGE >= 1000;
}

function render(results, append) {
  const grid = $("results");
  if (!append) grid.replaceChildren();
  for (const r of results) {
    const name = r.path.split("/").pop();
    const video = r.time !== undefined;  // a video hit: its best-matching frame, at that time
    const title = video ? `${r.path} at ${clock(r.time)}` : r.path;
    const img = el("img", { src: sized(r.thumbnail, 256), alt: video ? `${name}, the frame at ${clock(r.time)}` : name,
                            loading: "lazy", decoding: "async" });
    const card = el("button", { className: "card", type: "button", title },
      img,
      el("span", { className: "caption" },
        el("span", { className: "name", textContent: name }),
        el("span", { className: "score", textContent: scoreText(r),
          title: r.probability !== undefined ? `cosine ${r.score.toFixed(3)}; the model's match probability ${percent(r.probability)}` : "cosine similarity" })));
    if (r.offline) {
      card.classList.add("offline");
      card.title = `${title} (offline: its folder cannot be seen now)`;
      card.append(el("span", { className: "badge", textContent: "offline" }));
    }
    if (r.words && r.words.length) {  // found by the words it shows
      card.append(el("span", { className: "badge words", title: "shows these words", textContent: `“${r.words.join(" ")}”` }));
      card.lastChild.dataset.testid = "words";
    }
    if (video) {
      card.append(el("span", { className: "badge time", title: `video, the moment at ${clock(r.time)}` },
        el("span", { className: "play", textContent: "▶", ariaHidden: "true" }), clock(r.time)));
      card.dataset.time = r.time;
    }
    card.dataset.testid = "result";
    card.dataset.id = r.id;
    card.addEventListener("click", () => openViewer(r));
    grid.append(card);
  }
}

let typingTimer = 0;
function searchSoon() {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => search(), 250);
}

// ---- terms ----

function renderTerms() {
  const box = $("terms");
  box.replaceChildren();
  state.terms.forEach((t, i) => {
    const sign = el("button", { type: "button", className: "sign", textContent: t.weight > 0 ? "+" : "−",
                                title: "Switch between should match (+) and should not match (−)" });
    sign.addEventListener("click", () => { t.weight = -t.weight; renderTerms(); search(); });
    const remove = el("button", { type: "button", className: "remove", textContent: "✕", title: "Remove" });
    remove.addEventListener("click", () => { state.terms.splice(i, 1); renderTerms(); search(); });
    let body;
    if (t.kind === "text" || t.kind === "contains") {
      const contains = t.kind === "contains";
      const input = el("input", { value: t.text, placeholder: contains ? "words shown" : "term",
                                  ariaLabel: contains ? "words the images show" : "term" });
      input.addEventListener("input", () => { t.text = input.value; searchSoon(); });
      body = contains ? el("span", { className: "chip-kind", title: "Images showing these words (text read from them)" },
                           el("span", { className: "chip-label", textContent: "shows" }), input) : input;
    } else if (t.kind === "image") {
      body = el("img", { src: t.data, alt: t.label || "image", title: t.label || "" });
      // A format the browser cannot show (HEIC, RAW, JPEG XL): the server reads it; the chip names it.
      const img = body;
      img.addEventListener("error", () => img.replaceWith(el("span", { className: "chip-name", textContent: t.label || "image" })));
    } else if (t.time !== undefined) {
      body = el("img", { src: frameUrl(t.id, t.time, 64), alt: `video ${t.id} at ${clock(t.time)}`, title: t.label || "" });
    } else {
      body = el("img", { src: `/api/images/${t.id}/thumbnail?size=64`, alt: `image ${t.id}`, title: t.label || "" });
    }
    const chip = el("span", { className: `chip ${t.weight > 0 ? "positive" : "negative"}` }, sign, body, remove);
    chip.dataset.testid = t.kind === "contains" ? "contains-term" : "term";
    box.append(chip);
  });
}

function addTerm(term) {
  state.terms.push(term);
  renderTerms();
  search();
}

function readImageFile(file) {
  // Browsers give HEIC, RAW and JPEG XL files no image type (or none at all): the server reads the
  // content and says if it is not an image.
  if (!file || (file.type && !file.type.startsWith("image/") && file.type !== "application/octet-stream")) {
    showMessage(`${file ? file.name : "That"} is not an image.`, true);
    return;
  }
  if (file.size > 30 * 1024 * 1024) {
    showMessage(`${file.name} is larger than 30 MB.`, true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => addTerm({ kind: "image", data: reader.result, label: file.name, weight: 1 });
  reader.onerror = () => showMessage(`Cannot read ${file.name}.`, true);
  reader.readAsDataURL(file);
}

// An indexed image, or a video's moment (time in seconds), as a term.
function itemTerm(r, time, weight) {
  if (time === null || time === undefined) return { kind: "id", id: r.id, label: r.path, weight };
  time = Math.round(time * 1000) / 1000;
  return { kind: "id", id: r.id, time, label: `${r.path} at ${clock(time)}`, weight };
}

function moreLikeThis(r, time) {
  $("q").value = "";
  state.terms = [itemTerm(r, time, 1)];
  renderTerms();
  search();
}

// ---- viewer ----

// A video plays in the viewer when browsers play its format (MP4, WebM), starting at the hit's moment;
// another's (MOV, MKV, AVI) shows the frame of each moment. Its moments are buttons either way.
let viewing = null;
let moment = null;  // the viewed video's moment shown, in seconds (null: an image)

function stopVideo() {
  const video = $("viewer-video");
  video.pause();
  if (video.hasAttribute("src")) {
    video.removeAttribute("src");
    video.removeAttribute("poster");
    video.load();  // lets go of the connection
  }
  video.hidden = true;
  $("viewer-image").hidden = false;
}

function showFrame(r, time) {
  const image = $("viewer-image");
  image.src = frameUrl(r.id, time, 1024);
  image.alt = `${r.path} at ${clock(time)}`;
}

function playVideo(r) {
  const video = $("viewer-video");
  video.poster = frameUrl(r.id, moment, 1024);
  video.src = `${r.view_url}#t=${moment}`;  // a media fragment: it opens at the moment
  video.setAttribute("aria-label", `${r.path}, from ${clock(moment)}`);
  video.hidden = false;
  $("viewer-image").hidden = true;
}

// The moment "More like this" and the ± terms use: where the video is now, else the frame shown.
function currentMoment() {
  const video = $("viewer-video");
  if (moment === null) return null;
  return !video.hidden && video.readyState > 0 ? video.currentTime : moment;
}

function goToMoment(time) {
  moment = time;
  const video = $("viewer-video");
  if (!video.hidden) video.currentTime = time; else showFrame(viewing, time);
  for (const b of $("viewer-moments").children) b.setAttribute("aria-pressed", String(Number(b.dataset.time) === time));
}

function renderMoments(r) {
  const box = $("viewer-moments");
  const moments = r.time === undefined ? [] : [{ time: r.time, score: r.score }, ...(r.moments || [])];
  moments.sort((a, b) => a.time - b.time);
  box.replaceChildren(...moments.map((m) => {
    const b = el("button", { type: "button", textContent: clock(m.time),
                             title: `Go to ${clock(m.time)}` + (m.score !== undefined ? ` (score ${m.score.toFixed(3)})` : "") });
    b.setAttribute("aria-pressed", String(m.time === r.time));
    b.dataset.time = m.time;
    b.dataset.testid = "moment";
    b.addEventListener("click", () => goToMoment(m.time));
    return b;
  }));
  box.hidden = moments.length < 2;
}

async function openViewer(r) {
  viewing = r;
  stopVideo();
  moment = r.time !== undefined ? r.time : null;
  if (moment !== null) {
    showFrame(r, moment);  // until the info says whether the browser plays the video
  } else {
    $("viewer-image").src = r.view_url || r.url;  // a JPEG rendition of what a browser cannot show
    $("viewer-image").alt = r.path;
  }
  renderMoments(r);
  $("viewer-text").hidden = true;
  $("viewer-path").textContent = r.path;
  $("viewer-open").href = r.url;
  const at = moment !== null ? ` · at ${clock(moment)}` : "";
  $("viewer-meta").textContent = `${r.width} × ${r.height}${at}` + (r.score !== undefined ? ` · ${scoreText(r)}` : "");
  $("viewer-similar").title = moment !== null ? "More like this moment of the video" : "More like this image";
  $("viewer-plus").title = `Add this ${moment !== null ? "moment" : "image"} as a + term`;
  $("viewer-minus").title = `Add this ${moment !== null ? "moment" : "image"} as a − term`;
  $("viewer").showModal();
  try {
    const info = await (await fetch(`/api/images/${r.id}/info`)).json();
    if (viewing !== r) return;
    if (info.video && info.browser_displays && moment !== null) playVideo(r);
    const parts = [`#${info.id}`, `${info.width} × ${info.height}`, info.format.toUpperCase(), humanBytes(info.size_bytes)];
    if (info.capture_time) parts.push(`taken ${info.capture_time.replace("T", " ")}`);
    if (moment !== null) parts.push(`at ${clock(r.time)}`);
    if (r.score !== undefined) parts.push(`score ${r.score.toFixed(3)}`);
    if (r.probability !== undefined) parts.push(`match ${percent(r.probability)}`);
    if (info.offline) parts.push("offline: its folder cannot be seen now");
    $("viewer-meta").textContent = parts.join(" · ");
    renderText(info.text, r.words || []);
  } catch (_) { /* the basic line stays */ }
}

// The words the image shows (its text as read), the ones that matched the search marked.
function renderText(text, matched) {
  const box = $("viewer-text");
  if (!text || !text.text) { box.hidden = true; return; }
  const wanted = new Set(matched.map((w) => w.toLowerCase()));
  const parts = [];
  for (const piece of text.text.split(/(\s+)/)) {
    const bare = piece.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, "").toLowerCase();
    parts.push(bare && wanted.has(bare) ? el("mark", { textContent: piece }) : document.createTextNode(piece));
  }
  box.replaceChildren(el("span", { className: "label", textContent: "Shows " }), ...parts);
  box.hidden = false;
}

// ---- status ----

function fmt(n) { return Number(n).toLocaleString(); }
// "120 images", or "120 images · 4 videos" once videos are indexed.
function counted(c) {
  const videos = c.videos || 0;
  const images = `${fmt((c.indexed || 0) - videos)} images`;
  return videos ? `${images} · ${fmt(videos)} video${videos > 1 ? "s" : ""}` : images;
}

// 38 KB, 4.2 MB, 1.1 GB (powers of 1000, as file managers show them).
function humanBytes(n) {
  if (n < 1000) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let i = -1;
  do { n /= 1000; i++; } while (n >= 1000 && i < units.length - 1);
  return `${n >= 100 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
}

async function pollStatus() {
  let s;
  try {
    const res = await fetch("/api/status");
    s = await res.json();
  } catch (_) {
    $("status-pill").textContent = "server unreachable";
    $("status-pill").className = "pill error";
    return;
  }
  const c = s.collection || {};
  const ing = s.ingest;
  const pill = $("status-pill");
  const busy = ing && !ing.idle;
  const jobs = s.queue && !s.queue.error ? s.queue.pending + s.queue.leased : 0;
  pill.className = `pill${ing && ing.error ? " error" : busy || jobs ? " busy" : ""}`;
  pill.textContent = ing && ing.error ? "indexing stopped"
    : busy ? `indexing · ${fmt(ing.in_flight + ing.pending)} left · ${ing.images_per_s}/s`
    : jobs ? `${counted(c)} · workers embedding ${fmt(jobs)} more`
    : counted(c) + (c.failed ? ` · ${fmt(c.failed)} failed` : "") + (ing && ing.unavailable && ing.unavailable.length
      ? ` · ${ing.unavailable.length} folder${ing.unavailable.length > 1 ? "s" : ""} offline` : "");
  $("roots").replaceChildren(...(s.roots || []).map((r) => el("option", { value: r })));
  if (!$("status-panel").hidden) renderStatus(s);
}

function renderStatus(s) {
  const c = s.collection || {};
  const ing = s.ingest;
  const items = [["Indexed", fmt(c.indexed || 0)], ["Failed", fmt(c.failed || 0)],
                 ["Distinct images", fmt(c.distinct_vectors || 0)], ["Index", c.index_kind || "–"],
                 ["Text read", s.text ? `${fmt(s.text.read)} images` + (s.text.pending ? ` · ${fmt(s.text.pending)} to read` : "")
                   + (s.text.running && s.text.images_per_s ? ` · ${s.text.images_per_s.toFixed(2)}/s` : "") : "–"],
                 ["Model", `${s.model.name} (${s.model.dim}-d)`], ["Kernels", `${s.model.isa}, ${s.model.precision}`],
                 ["Version", `imgsearch ${s.server.version}`]];
  const panel = $("status-panel");
  panel.replaceChildren(el("h2", { textContent: "Status" }));
  const dl = el("dl");
  const add = (list) => { for (const [k, v] of list) dl.append(el("div", {}, el("dt", { textContent: k }), el("dd", { textContent: v }))); };
  add(items);
  panel.append(dl);
  if (ing) {
    const t = ing.since_start;
    const done = t.added + t.updated + t.failed;
    const left = ing.in_flight + ing.pending;
    const dl2 = el("dl");
    dl.after(dl2);
    for (const [k, v] of [["Watching", `${ing.roots.length} folder(s), ${ing.mode}`], ["State", ing.error ? "stopped" : ing.idle ? "up to date" : "indexing"],
                          ["Waiting", fmt(left)], ["Throughput", `${ing.images_per_s} images/s`],
                          ["Since start", `+${fmt(t.added)} ~${fmt(t.updated)} →${fmt(t.moved)} −${fmt(t.removed)}`],
                          ["Queues", `decode ${ing.queued} · encode ${ing.decoded} · write ${ing.encoded}`]]) {
      dl2.append(el("div", {}, el("dt", { textContent: k }), el("dd", { textContent: v })));
    }
    if (left > 0) panel.append(el("progress", { max: done + left, value: done }));
    if (ing.error) panel.append(el("p", { className: "message error", textContent: ing.error }));
    for (const note of ing.notes || []) panel.append(el("p", { className: "message", textContent: note }));
    if (ing.unavailable && ing.unavailable.length) {
      panel.append(el("h2", { textContent: "Folders that cannot be seen (their images are kept, offline)" }));
      panel.append(el("ul", {}, ...ing.unavailable.map((u) => el("li", {}, el("span", { className: "reason", textContent: u.reason })))));
    }
  }
  if (s.queue && !s.queue.error) {
    const q = s.queue;
    const dl3 = el("dl");
    panel.append(dl3);
    for (const [k, v] of [["Jobs waiting", fmt(q.pending)], ["Being embedded", fmt(q.leased)], ["To retry", fmt(q.retrying)],
                          ["Workers", q.workers.length ? q.workers.map((w) => `${w.name} (${fmt(w.jobs_done)})`).join(", ") : "none seen in the last minute"]]) {
      dl3.append(el("div", {}, el("dt", { textContent: k }), el("dd", { textContent: v })));
    }
  }
  if (s.failures && s.failures.length) {
    panel.append(el("h2", { textContent: "Images that could not be read" }));
    panel.append(el("ul", {}, ...s.failures.map((f) => el("li", {}, `${f.path}: `, el("span", { className: "reason", textContent: f.reason })))));
  }
}

// ---- URL: a search can be bookmarked and survives a reload ----

function saveToUrl() {
  const params = new URLSearchParams();
  const text = $("q").value.trim();
  if (text) params.set("q", text);
  const like = state.terms.find((t) => t.kind === "id");
  if (like && state.terms.length === 1) params.set("similar", like.time !== undefined ? `${like.id}@${like.time}` : like.id);
  for (const t of state.terms) if (t.kind === "contains" && t.weight > 0 && t.text.trim()) params.append("contains", t.text.trim());
  for (const [k, v] of Object.entries(filters())) params.set(k, v);
  const query = params.toString();
  history.replaceState(null, "", (query ? `?${query}` : location.pathname) + location.hash);
}

function loadFromUrl() {
  const params = new URLSearchParams(location.search);
  $("q").value = params.get("q") || "";
  const similar = params.get("similar");  // "12", or "12@34.5" for a video's moment
  if (similar) {
    const [id, time] = similar.split("@");
    state.terms = [time !== undefined ? { kind: "id", id: Number(id), time: Number(time), weight: 1 } : { kind: "id", id: Number(id), weight: 1 }];
  }
  for (const words of params.getAll("contains")) state.terms.push({ kind: "contains", text: words, weight: 1 });
  if (params.get("under")) $("under").value = params.get("under");
  if (params.get("after")) $("after").value = params.get("after");
  if (params.get("before")) $("before").value = params.get("before");
  renderTerms();
}

// ---- wiring ----

$("search-form").addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(typingTimer); search(); });
$("q").addEventListener("input", searchSoon);
for (const id of ["under", "after", "before"]) $(id).addEventListener("change", () => search());
$("add-term").addEventListener("click", () => {
  state.terms.push({ kind: "text", text: "", weight: 1 });
  renderTerms();
  $("terms").querySelector(".chip:last-child input")?.focus();
});
$("add-contains").addEventListener("click", () => {
  state.terms.push({ kind: "contains", text: "", weight: 1 });
  renderTerms();
  $("terms").querySelector(".chip:last-child input")?.focus();
});
$("file-input").addEventListener("change", (e) => { readImageFile(e.target.files[0]); e.target.value = ""; });
$("more").addEventListener("click", () => { state.offset += PAGE; search({ append: true }); });
// The status panel's state is in the URL (#status), so a link can open it.
function showStatusPanel(open) {
  $("status-panel").hidden = !open;
  $("status-pill").setAttribute("aria-expanded", String(open));
  history.replaceState(null, "", location.pathname + location.search + (open ? "#status" : ""));
  pollStatus();
}
$("status-pill").addEventListener("click", () => showStatusPanel($("status-panel").hidden));
window.addEventListener("hashchange", () => showStatusPanel(location.hash === "#status"));
// Each reads the video's moment before closing the viewer stops it.
$("viewer-similar").addEventListener("click", () => { const t = currentMoment(); $("viewer").close(); moreLikeThis(viewing, t); });
$("viewer-plus").addEventListener("click", () => { const t = currentMoment(); $("viewer").close(); addTerm(itemTerm(viewing, t, 1)); });
$("viewer-minus").addEventListener("click", () => { const t = currentMoment(); $("viewer").close(); addTerm(itemTerm(viewing, t, -1)); });
$("viewer").addEventListener("close", stopVideo);
// The moment's button is pressed while the video is at that moment.
$("viewer-video").addEventListener("seeked", () => {
  const now = $("viewer-video").currentTime;
  for (const b of $("viewer-moments").children) b.setAttribute("aria-pressed", String(Math.abs(Number(b.dataset.time) - now) < 0.5));
});
// A video the browser cannot decode after all (an MP4 of HEVC, say): the frame of the moment instead.
$("viewer-video").addEventListener("error", () => {
  const video = $("viewer-video");
  if (!video.hasAttribute("src") || moment === null) return;
  const t = currentMoment();
  stopVideo();
  showFrame(viewing, t);
});
$("viewer").addEventListener("click", (e) => { if (e.target === $("viewer")) $("viewer").close(); });

let dragDepth = 0;
document.addEventListener("dragenter", (e) => { if ([...e.dataTransfer.types].includes("Files")) { dragDepth++; $("drop-overlay").hidden = false; } });
document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop-overlay").hidden = true; } });
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  $("drop-overlay").hidden = true;
  if (e.dataTransfer.files.length) readImageFile(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (item) { e.preventDefault(); readImageFile(item.getAsFile()); }
});

loadFromUrl();
search();
if (location.hash === "#status") showStatusPanel(true); else pollStatus();
setInterval(pollStatus, STATUS_EVERY);
