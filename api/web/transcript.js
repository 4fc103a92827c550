// The transcript view: words that follow the audio, click to seek, and downloads.

import { dispositionName } from "./api.js";

const UNSPACED = /[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]/;

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** Index of the last word starting at or before `t` (binary search), or -1. */
function wordAt(words, t) {
  let lo = 0;
  let hi = words.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (words[mid].start <= t) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

export class TranscriptView {
  constructor(api, root) {
    this.api = api;
    this.root = root;
    this.region = root.querySelector("#transcript");
    this.player = root.querySelector("#player");
    this.meta = root.querySelector("#viewer-meta");
    this.noAudio = root.querySelector("#no-audio");
    this.jobId = null;
    this.spans = [];
    this.words = [];
    this.current = -1;
    this.onError = () => {};
    root.querySelectorAll(".downloads button").forEach((button) =>
      button.addEventListener("click", () => this.download(button.dataset.format)),
    );
    this.region.addEventListener("click", (e) => {
      const span = e.target.closest(".word");
      if (!span) return;
      const word = this.words[Number(span.dataset.i)];
      this.player.currentTime = word.start;
      this.highlight(word.start);
      if (!this.player.hidden) this.player.play().catch(() => {});
    });
    const follow = () => {
      this.highlight(this.player.currentTime);
      if (!this.player.paused) requestAnimationFrame(follow);
    };
    this.player.addEventListener("play", follow);
    this.player.addEventListener("seeked", () => this.highlight(this.player.currentTime));
    this.player.addEventListener("timeupdate", () => this.highlight(this.player.currentTime));
  }

  /** Show a finished job: its words, and its audio when this browser still has the file. */
  async open(job, name, audioUrl) {
    this.jobId = job.id;
    this.root.hidden = false;
    this.meta.textContent = `${name} · ${job.duration ? clock(job.duration) : ""} · ${job.model}`;
    this.region.textContent = "Loading…";
    if (audioUrl) {
      this.player.src = audioUrl;
      this.player.hidden = false;
      this.noAudio.hidden = true;
    } else {
      this.player.removeAttribute("src");
      this.player.hidden = true;
      this.noAudio.hidden = false;
    }
    let body;
    try {
      body = await (await this.api.transcript(job.id, "verbose_json")).json();
    } catch (err) {
      this.region.textContent = "";
      this.onError(`${name}: ${err.message}`);
      return;
    }
    if (this.jobId !== job.id) return;
    this.render(body);
  }

  render(body) {
    this.region.replaceChildren();
    this.words = body.words || [];
    this.spans = [];
    this.current = -1;
    const segments = body.segments || [];
    let w = 0;
    for (const segment of segments) {
      const p = document.createElement("p");
      const stamp = document.createElement("span");
      stamp.className = "t";
      stamp.textContent = clock(segment.start);
      p.append(stamp);
      const before = w;
      while (w < this.words.length && this.words[w].start < segment.end + 0.01) {
        const span = document.createElement("span");
        span.className = "word";
        span.dataset.i = String(w);
        const text = this.words[w].word;
        span.textContent = text.trim();
        this.spans.push(span);
        // Words keep their own leading space where the transcript has one; otherwise a space
        // goes between them, except in scripts written without spaces.
        if (w > before && (/^\s/.test(text) || !UNSPACED.test(text))) p.append(" ");
        p.append(span);
        w += 1;
      }
      if (w === before) p.append(segment.text);
      this.region.append(p);
    }
    if (!segments.length) this.region.textContent = body.text || "(no speech)";
  }

  highlight(t) {
    const i = wordAt(this.words, t);
    const next = i >= 0 && t <= this.words[i].end + 0.25 ? i : -1;
    if (next === this.current) return;
    this.spans[this.current]?.classList.remove("now");
    this.current = next;
    const span = this.spans[next];
    if (span) {
      span.classList.add("now");
      span.scrollIntoView({ block: "nearest" });
    }
  }

  async download(format) {
    if (!this.jobId) return;
    try {
      const response = await this.api.transcript(this.jobId, format);
      const name = dispositionName(response.headers.get("content-disposition"), `transcript.${format}`);
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement("a");
      link.href = url;
      link.download = name;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      this.onError(`Download failed: ${err.message}`);
    }
  }
}
