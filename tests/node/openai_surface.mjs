// The official OpenAI Node SDK against this server, changed in nothing but base URL and key.
// Run by tests/e2e/test_openai_node.py: STT_URL, STT_KEY, and the clips to send in
// STT_CLIP_EN (English speech), STT_CLIP_FR (French speech) and STT_CLIP_STREAM (streamed).
// Prints one JSON object with what the SDK returned; the Python test judges it.
import fs from "node:fs";
import OpenAI, { NotFoundError } from "openai";

const client = new OpenAI({ baseURL: `${process.env.STT_URL}/v1`, apiKey: process.env.STT_KEY });
const file = (name) => fs.createReadStream(process.env[name]);
const out = { transcriptions: [], translations: [] };

const combos = [
  ["json", null],
  ["text", null],
  ["srt", null],
  ["vtt", null],
  ["verbose_json", null],
  ["verbose_json", ["segment"]],
  ["verbose_json", ["word"]],
  ["verbose_json", ["word", "segment"]],
];
for (const [format, granularities] of combos) {
  const params = {
    model: "whisper-1",
    file: file("STT_CLIP_EN"),
    language: "en",
    response_format: format,
  };
  if (granularities) params.timestamp_granularities = granularities;
  const result = await client.audio.transcriptions.create(params);
  out.transcriptions.push({ format, granularities, kind: typeof result, result });
}

const options = await client.audio.transcriptions.create({
  model: "whisper-1",
  file: file("STT_CLIP_EN"),
  language: "en",
  prompt: "A reading from a novel.",
  temperature: 0.2,
});
out.options = options;

for (const format of ["json", "text", "verbose_json"]) {
  const result = await client.audio.translations.create({
    model: "whisper-1",
    file: file("STT_CLIP_FR"),
    response_format: format,
  });
  out.translations.push({ format, kind: typeof result, result });
}

const models = [];
for await (const model of client.models.list()) models.push(model);
out.models = models;
out.model = await client.models.retrieve("whisper-1");
try {
  await client.models.retrieve("gpt-4o-transcribe");
  out.unknown_model = "no error";
} catch (err) {
  out.unknown_model = {
    not_found: err instanceof NotFoundError,
    status: err.status,
    code: err.code,
    param: err.param,
  };
}

const events = [];
const stream = await client.audio.transcriptions.create({
  model: "whisper-1",
  file: file("STT_CLIP_STREAM"),
  stream: true,
});
for await (const event of stream) events.push({ ...event, at: Date.now() });
out.stream = events;

process.stdout.write(JSON.stringify(out));
