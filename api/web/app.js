// The web app: key, upload, the key's jobs with live status, and the transcript view.

import { Api } from "./api.js";
import { TranscriptView } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);
const KEY = "stt.apiKey";
const NAMES = "stt.jobNames";
const MODEL = "stt.model";
const ACTIVE = new Set(["queued", "running"]);
const LANGUAGES = [
  ["en", "English"], ["de", "German"], ["fr", "French"], ["es", "Spanish"], ["it", "Italian"],
  ["pt", "Portuguese"], ["nl", "Dutch"], ["pl", "Polish"], ["sv", "Swedish"], ["da", "Danish"],
  ["fi", "Finnish"], ["no", "Norwegian"], ["cs", "Czech"], ["ro", "Romanian"], ["el", "Greek"],
  ["ru", "Russian"], ["uk", "Ukrainian"], ["tr", "Turkish"], ["ar", "Arabic"], ["he", "Hebrew"],
  ["hi", "Hindi"], ["zh", "Chinese"], ["ja", "Japanese"], ["ko", "Korean"], ["vi", "Vietnamese"],
];

const state = {
  names: JSON.parse(localStorage.getItem(NAMES) || "{}"),
  audio: new Map(), // job id → object URL of the file dropped in this page
  items: new Map(), // job id → its list item
  texts: new Map(), // job id → the finished text, fetched once
  selected: null,
  opened: new Set(), // jobs of this page already opened once they finished
  timer: null,
  listError: "",
  submitErrors: [],
};
const api = new Api(() => $("#api-key").value.trim());
const viewer = new TranscriptView(api, $("#viewer"));

function showErrors() {
  const box = $("#errors");
  box.replaceChildren(
    ...[state.listError, ...state.submitErrors].filter(Boolean).map((text) => {
      const p = document.createElement("p");
      p.textContent = text;
      return p;
    }),
  );
}
viewer.onError = (text) => {
  state.submitErrors.push(text);
  showErrors();
};

function nameOf(job) {
  return state.names[job.id] || `Job ${job.id}`;
}

function remember(id, name) {
  state.names[id] = name;
  localStorage.setItem(NAMES, JSON.stringify(state.names));
}

function describe(job) {
  const parts = [];
  if (job.duration) parts.push(`${Math.round(job.duration)} s of audio`);
  if (job.status === "running") parts.push(`${Math.round(job.progress * 100)} %`);
  parts.push(new Date(job.created_at).toLocaleString());
  return parts.join(" · ");
}

function button(label, onClick, className = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

function newItem() {
  const li = document.createElement("li");
  li.className = "job";
  li.innerHTML =
    '<div><span class="job-name"></span><span class="status"></span>' +
    '<div class="job-meta"></div></div><div class="job-actions"></div>' +
    '<progress max="1" value="0"></progress><p class="job-text"></p><p class="job-error"></p>';
  return li;
}

function setActions(li, job) {
  const key = job.status;
  if (li.dataset.actions === key) return; // keep the buttons while the status holds
  li.dataset.actions = key;
  const actions = li.querySelector(".job-actions");
  const name = nameOf(job);
  const list = [];
  if (job.status === "succeeded") list.push(button("Open", () => openJob(job.id), "primary-soft"));
  if (ACTIVE.has(job.status)) {
    list.push(button("Cancel", () => remove(job.id, name, "cancel"), "danger"));
  } else {
    list.push(button("Delete", () => remove(job.id, name, "delete"), "danger"));
  }
  list.forEach((b) => b.setAttribute("aria-label", `${b.textContent} ${name}`));
  actions.replaceChildren(...list);
}

function update(li, job) {
  li.dataset.id = job.id;
  li.dataset.status = job.status;
  li.setAttribute("aria-label", nameOf(job));
  li.classList.toggle("selected", state.selected === job.id);
  li.querySelector(".job-name").textContent = nameOf(job);
  const status = li.querySelector(".status");
  status.textContent = job.status;
  status.className = `status ${job.status}`;
  li.querySelector(".job-meta").textContent = describe(job);
  const bar = li.querySelector("progress");
  bar.hidden = !ACTIVE.has(job.status);
  bar.value = job.progress || 0;
  const text = job.text_so_far || state.texts.get(job.id) || "";
  li.querySelector(".job-text").textContent = text;
  li.querySelector(".job-error").textContent =
    job.status === "failed" && job.error ? `Failed: ${job.error.message}` : "";
  setActions(li, job);
}

async function finishedText(job) {
  if (state.texts.has(job.id)) return;
  state.texts.set(job.id, "");
  try {
    const text = await (await api.transcript(job.id, "text")).text();
    state.texts.set(job.id, text.trim());
    const li = state.items.get(job.id);
    if (li) li.querySelector(".job-text").textContent = text.trim();
  } catch {
    state.texts.delete(job.id);
  }
}

function render(jobs) {
  const list = $("#jobs");
  const seen = new Set();
  jobs.forEach((job, index) => {
    seen.add(job.id);
    let li = state.items.get(job.id);
    if (!li) {
      li = newItem();
      state.items.set(job.id, li);
    }
    update(li, job);
    // A job dropped in this page opens by itself when it is done, if nothing else is open.
    if (job.status === "succeeded" && state.audio.has(job.id) && !state.opened.has(job.id)) {
      state.opened.add(job.id);
      if (!state.selected) setTimeout(() => openJob(job.id));
    }
    const at = list.children[index];
    if (at !== li) list.insertBefore(li, at || null);
    if (job.status === "succeeded" && index < 20) finishedText(job);
  });
  for (const [id, li] of state.items) {
    if (!seen.has(id)) {
      li.remove();
      state.items.delete(id);
    }
  }
  $("#no-jobs").hidden = jobs.length > 0 || list.querySelector(".pending") !== null;
  $("#jobs-note").textContent = jobs.length ? `${jobs.length} shown` : "";
  return jobs.some((job) => ACTIVE.has(job.status));
}

async function refresh() {
  clearTimeout(state.timer);
  if (!api.getKey()) {
    state.listError = "";
    showErrors();
    return;
  }
  let active = false;
  try {
    const page = await api.listJobs();
    state.listError = "";
    active = render(page.data);
    state.jobs = new Map(page.data.map((job) => [job.id, job]));
  } catch (err) {
    state.listError = err.message;
  }
  showErrors();
  state.timer = setTimeout(refresh, active ? 1000 : 5000);
}

async function remove(id, name, verb) {
  try {
    await api.deleteJob(id);
  } catch (err) {
    state.submitErrors.push(`Could not ${verb} ${name}: ${err.message}`);
    showErrors();
  }
  if (verb === "delete" && state.selected === id) {
    $("#viewer").hidden = true;
    state.selected = null;
  }
  refresh();
}

function openJob(id) {
  const job = state.jobs?.get(id);
  if (!job) return;
  state.selected = id;
  state.items.forEach((li, jobId) => li.classList.toggle("selected", jobId === id));
  viewer.open(job, nameOf(job), state.audio.get(id));
  $("#viewer").scrollIntoView({ behavior: "smooth", block: "start" });
}

function pendingItem(file) {
  const li = document.createElement("li");
  li.className = "job pending";
  li.innerHTML =
    '<div><span class="job-name"></span><span class="status">uploading</span>' +
    '<div class="job-meta"></div></div><progress max="1" value="0"></progress>';
  li.querySelector(".job-name").textContent = file.name;
  $("#jobs").prepend(li);
  $("#no-jobs").hidden = true;
  return li;
}

async function upload(file, options) {
  const li = pendingItem(file);
  const bar = li.querySelector("progress");
  const meta = li.querySelector(".job-meta");
  try {
    const job = await api.submit(file, options, (fraction) => {
      bar.value = fraction;
      meta.textContent = `${Math.round(fraction * 100)} % of ${(file.size / 1e6).toFixed(1)} MB sent`;
    });
    remember(job.id, file.name);
    state.audio.set(job.id, URL.createObjectURL(file));
  } catch (err) {
    state.submitErrors.push(`${file.name}: ${err.message}`);
    showErrors();
  } finally {
    li.remove();
  }
}

async function transcribe(event) {
  event.preventDefault();
  state.submitErrors = [];
  const files = [...$("#audio-file").files];
  if (!api.getKey()) state.submitErrors.push("Enter your API key first.");
  else if (!files.length) state.submitErrors.push("Choose or drop at least one audio file.");
  showErrors();
  if (state.submitErrors.length) return;
  const options = {
    model: $("#model").value,
    language: $("#language").value,
    translate: $("#translate").checked,
  };
  $("#audio-file").value = "";
  $("#chosen").textContent = "MP3, WAV, FLAC, M4A, OGG, WebM… one or many";
  const uploads = files.map((file) => upload(file, options).then(refresh));
  refresh();
  await Promise.all(uploads);
}

async function loadModels() {
  if (!api.getKey()) return;
  try {
    const names = (await api.models()).data.map((m) => m.id);
    const select = $("#model");
    const wanted = localStorage.getItem(MODEL) || select.value;
    select.replaceChildren(
      ...names.map((name) => new Option(name, name, false, name === wanted)),
    );
  } catch {
    /* the job list shows what is wrong with the key */
  }
}

function showChosen() {
  const files = [...$("#audio-file").files];
  $("#chosen").textContent = files.length
    ? files.map((f) => f.name).join(", ")
    : "MP3, WAV, FLAC, M4A, OGG, WebM… one or many";
}

function setup() {
  const key = $("#api-key");
  key.value = localStorage.getItem(KEY) || "";
  let typing = null;
  key.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      localStorage.setItem(KEY, key.value.trim());
      state.items.forEach((li) => li.remove());
      state.items.clear();
      loadModels();
      refresh();
    }, 300);
  });
  const language = $("#language");
  LANGUAGES.forEach(([code, name]) => language.append(new Option(`${name} (${code})`, code)));
  $("#model").addEventListener("change", (e) => localStorage.setItem(MODEL, e.target.value));
  $("#translate").addEventListener("change", (e) => (language.disabled = e.target.checked));
  $("#audio-file").addEventListener("change", showChosen);
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    $("#audio-file").files = e.dataTransfer.files;
    showChosen();
  });
  $("#submit-form").addEventListener("submit", transcribe);
  loadModels();
  refresh();
}

setup();
