// The job API as the page uses it: every call carries the key and every error becomes words.

/** An answer from the API that was not a success, with the server's own message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The message in either error shape: Cartesia's `{message}` or OpenAI's `{error: {message}}`. */
export function errorMessage(status, body) {
  const message =
    (body && typeof body === "object" && (body.error?.message || body.message)) ||
    (typeof body === "string" && body.trim()) ||
    `the server answered ${status}`;
  if (status === 401) return `The API key was refused: ${message}`;
  if (status === 413) return `Too large: ${message}`;
  if (status === 415) return `Not audio this server can read: ${message}`;
  if (status === 429) return `Too many requests: ${message}`;
  if (status >= 500) return `The server could not do it (${status}): ${message}`;
  return message.charAt(0).toUpperCase() + message.slice(1);
}

async function readBody(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class Api {
  constructor(getKey) {
    this.getKey = getKey;
  }

  headers(extra = {}) {
    const key = this.getKey();
    return key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
  }

  /** `fetch` with the key; resolves to the Response, rejects with an ApiError. */
  async request(method, path, { headers = {}, body } = {}) {
    let response;
    try {
      response = await fetch(path, { method, headers: this.headers(headers), body });
    } catch (err) {
      throw new ApiError(0, `The server cannot be reached (${err.message}).`);
    }
    if (!response.ok) throw new ApiError(response.status, errorMessage(response.status, await readBody(response)));
    return response;
  }

  async json(method, path, options) {
    const response = await this.request(method, path, options);
    return response.status === 204 ? null : response.json();
  }

  listJobs() {
    return this.json("GET", "/stt/jobs?limit=50");
  }

  models() {
    return this.json("GET", "/v1/models");
  }

  deleteJob(id) {
    return this.json("DELETE", `/stt/jobs/${encodeURIComponent(id)}`);
  }

  transcript(id, format) {
    return this.request("GET", `/stt/jobs/${encodeURIComponent(id)}/transcript?response_format=${format}`);
  }

  /**
   * Upload one file as a job (a translation goes through OpenAI's path, asked to answer
   * with the job). `onProgress(fraction)` follows the upload. Resolves to the job.
   */
  submit(file, { model, language, translate }, onProgress) {
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("model", model);
    if (language && !translate) form.append("language", language);
    const path = translate ? "/v1/audio/translations" : "/stt/jobs";
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      for (const [name, value] of Object.entries(this.headers())) xhr.setRequestHeader(name, value);
      if (translate) xhr.setRequestHeader("Prefer", "respond-async");
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError(0, "The server cannot be reached."));
      xhr.onload = () => {
        let body = xhr.responseText;
        try {
          body = JSON.parse(body);
        } catch {
          /* a plain-text answer */
        }
        if (xhr.status === 202 || xhr.status === 200) resolve(body);
        else reject(new ApiError(xhr.status, errorMessage(xhr.status, body)));
      };
      xhr.send(form);
    });
  }
}

/** The file name in a Content-Disposition header (RFC 6266), preferring the UTF-8 form. */
export function dispositionName(header, fallback) {
  if (!header) return fallback;
  const star = /filename\*=UTF-8''([^;]+)/i.exec(header);
  if (star) return decodeURIComponent(star[1]);
  const plain = /filename="([^"]+)"/i.exec(header);
  return plain ? plain[1] : fallback;
}
