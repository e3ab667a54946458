// sambertd console: calls this origin's API only (GET v1/voices, POST v1/tts).
// The token is read from its field when a request is made and goes nowhere but that
// request's Authorization header: never localStorage, sessionStorage, cookies or a URL.
// All text reaches the page through textContent (nothing is parsed as HTML).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("tts-form");
  const text = $("text");
  const ssml = $("ssml");
  const voiceSelect = $("voice");
  const emotionSelect = $("emotion");
  const formatSelect = $("format");
  const rateSelect = $("sample-rate");
  const token = $("token");
  const button = $("synthesize");
  const busy = $("busy");
  const errorBox = $("error");
  const audio = $("audio");
  const download = $("download");
  const CONTROLS = ["speed", "pitch", "volume"];
  const EXTENSIONS = { wav: "wav", mp3: "mp3", opus: "ogg", flac: "flac" };
  const MIME = { wav: "audio/wav", mp3: "audio/mpeg", opus: 'audio/ogg; codecs="opus"',
    flac: "audio/flac" };
  let voices = [];
  let objectUrl = null;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.textContent = "";
    errorBox.hidden = true;
  }

  // The project's error shape: {"error": {"code", "message", "request_id"}}.
  async function describeFailure(response) {
    let code = "http_error";
    let message = response.statusText || "request failed";
    let requestId = response.headers.get("X-Request-Id");
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
        requestId = body.error.request_id || requestId;
      }
    } catch (_) {
      // not JSON (a proxy's page): keep the status line
    }
    let out = `${message} (${code}, HTTP ${response.status})`;
    const retry = response.headers.get("Retry-After");
    if (retry) out += ` — 请 ${retry} 秒后重试 · retry after ${retry} s`;
    if (requestId) out += ` [request id ${requestId}]`;
    return out;
  }

  function fillSelect(select, values, selected) {
    select.replaceChildren();
    for (const [value, label] of values) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label;
      option.selected = value === selected;
      select.appendChild(option);
    }
  }

  function currentVoice() {
    return voices.find((v) => v.id === voiceSelect.value);
  }

  function onVoiceChange() {
    const voice = currentVoice();
    if (!voice) return;
    const emotions = voice.emotions.length ? voice.emotions : ["neutral"];
    const preferred = emotions.includes("neutral") ? "neutral" : emotions[0];
    fillSelect(emotionSelect, emotions.map((e) => [e, e]), preferred);
    const previousRate = rateSelect.value;
    fillSelect(
      rateSelect,
      [["", `默认 default (${voice.sample_rate} Hz)`]].concat(
        voice.sample_rates.map((r) => [String(r), `${r} Hz`])),
      previousRate,
    );
    for (const name of CONTROLS) {
      const input = $(name);
      input.disabled = !voice.controls.includes(name);
      if (input.disabled) {
        input.value = "1";
        showValue(name);
      }
    }
    $("voice-info").textContent =
      `${voice.engine} · ${voice.language} · ${voice.description || ""}`;
  }

  function showValue(name) {
    $(`${name}-value`).textContent = Number($(name).value).toFixed(2);
  }

  async function loadVoices() {
    let response;
    try {
      response = await fetch("v1/voices", { cache: "no-store", credentials: "omit" });
    } catch (err) {
      showError(`网络错误，无法读取音色 · network error loading voices: ${err.message}`);
      return;
    }
    if (!response.ok) {
      showError(`无法读取音色 · cannot load voices: ${await describeFailure(response)}`);
      return;
    }
    voices = (await response.json()).voices || [];
    const preferred = (voices.find((v) => v.default) || voices[0] || {}).id;
    fillSelect(voiceSelect, voices.map((v) => [v.id, `${v.id} (${v.engine})`]), preferred);
    onVoiceChange();
  }

  function keepPlayableFormats() {
    // wav and mp3 stay whatever canPlayType says; others only where this browser plays them.
    for (const option of Array.from(formatSelect.options)) {
      const keep = ["wav", "mp3"].includes(option.value) ||
        audio.canPlayType(MIME[option.value]) !== "";
      if (!keep) option.remove();
    }
  }

  function requestBody() {
    const body = {
      text: text.value,
      voice: voiceSelect.value,
      emotion: emotionSelect.value || "neutral",
      format: formatSelect.value,
    };
    // Unchecked: the server's own rule (text starting with <speak is SSML).
    if (ssml.checked) body.text_type = "ssml";
    if (rateSelect.value) body.sample_rate = Number(rateSelect.value);
    for (const name of CONTROLS) {
      const input = $(name);
      if (!input.disabled && Number(input.value) !== 1) body[name] = Number(input.value);
    }
    return body;
  }

  function filename(voice, format) {
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
    const safe = (voice || "voice").replace(/[^A-Za-z0-9_-]/g, "_");
    return `sambertd-${safe}-${stamp}.${EXTENSIONS[format] || format}`;
  }

  function showResult(response, blob, body) {
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(blob);
    audio.src = objectUrl;
    download.href = objectUrl;
    download.download = filename(response.headers.get("X-Voice") || body.voice, body.format);
    download.hidden = false;
    const duration = response.headers.get("X-Audio-Duration");
    $("info-duration").textContent = duration ? `${Number(duration).toFixed(2)} s` : "–";
    $("info-voice").textContent = response.headers.get("X-Voice") || "–";
    $("info-cache").textContent = response.headers.get("X-Cache") || "–";
    $("info-rate").textContent = response.headers.get("X-Sample-Rate") || "–";
    $("info-request").textContent = response.headers.get("X-Request-Id") || "–";
  }

  async function synthesize(event) {
    event.preventDefault();
    clearError();
    if (text.value.length === 0) {
      showError("请输入文本 · Enter some text to synthesize (empty_text)");
      text.focus();
      return;
    }
    const body = requestBody();
    const headers = { "Content-Type": "application/json", Accept: "audio/*, application/json" };
    if (token.value) headers.Authorization = `Bearer ${token.value.trim()}`;
    button.disabled = true;
    busy.textContent = "合成中… Synthesizing…";
    try {
      let response;
      try {
        response = await fetch("v1/tts", {
          method: "POST",
          headers,
          body: JSON.stringify(body),
          cache: "no-store",
          credentials: "omit",
          referrerPolicy: "no-referrer",
        });
      } catch (err) {
        showError(`网络错误 · network error: ${err.message}`);
        return;
      }
      if (!response.ok) {
        showError(await describeFailure(response));
        return;
      }
      const blob = await response.blob();
      if (blob.size === 0) {
        showError("服务器返回了空音频 · the server sent no audio");
        return;
      }
      showResult(response, blob, body);
      audio.play().catch(() => {
        // autoplay refused: the controls are there to press play
      });
    } catch (err) {
      showError(`错误 · error: ${err.message}`);
    } finally {
      button.disabled = false;
      busy.textContent = "";
    }
  }

  voiceSelect.addEventListener("change", onVoiceChange);
  for (const name of CONTROLS) $(name).addEventListener("input", () => showValue(name));
  form.addEventListener("submit", synthesize);
  keepPlayableFormats();
  loadVoices();
})();
