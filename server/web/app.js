// ekyc demo page: live quality guidance from the camera, capture or upload, and the verdict.
// Talks only to this origin's HTTP/JSON API (see /openapi.json); no external resources.
"use strict";

const GUIDE_EVERY_MS = 500;
const GUIDE_MAX_SIDE = 640;       // CheckQuality runs on a downscaled frame
const CAPTURE_QUALITY = 0.92;

// One instruction a person can follow per quality reason (the proto's QualityReason names).
const INSTRUCTIONS = {
  NO_FACE: "Put your face in the frame",
  MULTIPLE_FACES: "Only one person, please",
  FACE_TOO_SMALL: "Move closer",
  TOO_DARK: "More light, please",
  TOO_BRIGHT: "Too bright: move away from direct light",
  BLURRY: "Hold still: the picture is blurred",
  LOW_RESOLUTION: "The picture is too small: use a better camera or a larger photo",
  LOW_CONTRAST: "Face an even light",
  FACE_CUT_OFF: "Centre your face in the frame",
  POSE_TOO_LARGE: "Look straight at the camera",
  EYES_CLOSED: "Open your eyes",
  EYES_OCCLUDED: "Take off your sunglasses",
};

const DECISIONS = {
  LIVE: ["LIVE", "A live person."],
  SPOOF: ["SPOOF", "Looks like a photo or a screen, not a live person."],
  UNCERTAIN: ["UNCERTAIN", "Needs review: the score is too close to the threshold to decide."],
};

const $ = (id) => document.getElementById(id);

const state = {
  stream: null,
  timer: null,
  inFlight: false,
  passed: false,
};

function reasonName(value) {
  return String(value).replace(/^QUALITY_REASON_/, "");
}

function instructionFor(reason) {
  const name = reasonName(reason);
  if (INSTRUCTIONS[name]) return INSTRUCTIONS[name];
  const words = name.toLowerCase().replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function headers(contentType) {
  const result = { "Content-Type": contentType, "Accept": "application/json" };
  const key = $("api-key").value.trim();
  if (key) result["Authorization"] = "Bearer " + key;
  return result;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(path, body, contentType, params) {
  const query = new URLSearchParams(params || {}).toString();
  const response = await fetch(path + (query ? "?" + query : ""), {
    method: "POST",
    headers: headers(contentType),
    body: body,
    credentials: "same-origin",
    cache: "no-store",
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch (_) {
    payload = null;
  }
  if (!response.ok) {
    const code = payload && payload.code ? payload.code : "HTTP_" + response.status;
    const message = payload && payload.message ? payload.message : response.statusText || "request failed";
    throw new ApiError(response.status, code, message);
  }
  return payload;
}

function showError(error, source) {
  const box = $("error");
  if (!error) {
    if (!source || box.dataset.source === source) {
      box.hidden = true;
      box.textContent = "";
    }
    return;
  }
  box.dataset.source = source || "";
  let text = error.message || String(error);
  if (error instanceof ApiError) {
    if (error.status === 401) {
      text = "The server needs an API key: " + text;
      $("key-details").open = true;
    } else if (error.status === 413) {
      text = "The photo is too large: " + text;
    } else if (error.status === 429) {
      text = "Too many requests, try again in a moment: " + text;
    } else if (error.status === 503) {
      text = "The service is not ready yet: " + text;
    }
  }
  box.textContent = text;
  box.dataset.code = error.code || "";
  box.hidden = false;
}

// ------------------------------------------------------------------ camera and guidance

function frameBlob(maxSide, quality) {
  const video = $("video");
  const width = video.videoWidth;
  const height = video.videoHeight;
  if (!width || !height) return Promise.resolve(null);
  const scale = maxSide ? Math.min(1, maxSide / Math.max(width, height)) : 1;
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
}

function drawFaceBox(report) {
  const video = $("video");
  const overlay = $("overlay");
  overlay.width = video.videoWidth || overlay.width;
  overlay.height = video.videoHeight || overlay.height;
  const context = overlay.getContext("2d");
  context.clearRect(0, 0, overlay.width, overlay.height);
  const box = report && report.faceBox;
  if (!box || !report.imageWidth) return;
  const scale = overlay.width / report.imageWidth;
  context.lineWidth = Math.max(3, overlay.width / 160);
  context.strokeStyle = report.passed ? "#2fd36b" : "#ffb020";
  context.strokeRect(box.x * scale, box.y * scale, box.width * scale, box.height * scale);
}

function setGuidance(stateName, text, more) {
  const guidance = $("guidance");
  guidance.dataset.state = stateName;
  guidance.textContent = text;
  const list = $("guidance-more");
  list.replaceChildren(...(more || []).map((line) => {
    const item = document.createElement("li");
    item.textContent = line;
    return item;
  }));
}

function applyQuality(report) {
  const reasons = (report.reasons || []).map(reasonName);
  $("guidance").dataset.reasons = reasons.join(" ");
  drawFaceBox(report);
  state.passed = Boolean(report.passed);
  $("capture").disabled = !state.passed;
  if (state.passed) {
    setGuidance("ok", "Looks good: hold still and press Capture", []);
  } else if (reasons.length) {
    setGuidance("fix", instructionFor(reasons[0]), reasons.slice(1).map(instructionFor));
  } else {
    setGuidance("fix", "Put your face in the frame", []);
  }
}

async function guideOnce() {
  if (state.inFlight || !state.stream) return;
  state.inFlight = true;
  try {
    const blob = await frameBlob(GUIDE_MAX_SIDE, 0.85);
    if (!blob) return;
    const response = await call("/v1/quality:check", blob, "image/jpeg");
    if (state.stream) applyQuality(response.quality || {});
    showError(null, "guidance");
  } catch (error) {
    state.passed = false;
    $("capture").disabled = true;
    setGuidance("error", "Guidance is unavailable", []);
    showError(error, "guidance");
  } finally {
    state.inFlight = false;
  }
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    cameraUnavailable("This browser gives no camera here (it needs https or localhost).");
    return;
  }
  setGuidance("idle", "Starting the camera…", []);
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: false,
    });
  } catch (error) {
    cameraUnavailable("No camera allowed (" + (error.name || "error") + ").");
    return;
  }
  const video = $("video");
  video.srcObject = state.stream;
  $("stage").hidden = false;
  $("camera-toggle").textContent = "Stop camera";
  setGuidance("idle", "Looking for your face…", []);
  state.timer = window.setInterval(guideOnce, GUIDE_EVERY_MS);
}

function stopCamera() {
  if (state.timer) window.clearInterval(state.timer);
  state.timer = null;
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  state.passed = false;
  $("capture").disabled = true;
  $("stage").hidden = true;
  $("camera-toggle").textContent = "Start camera";
  setGuidance("idle", "Camera off.", []);
}

function cameraUnavailable(why) {
  stopCamera();
  setGuidance("unavailable", why + " Upload a photo instead.", []);
  $("camera-toggle").textContent = "Try the camera again";
}

// ------------------------------------------------------------------ verify and the result

function profileParams() {
  const profile = $("profile").value;
  return profile ? { profile: profile } : {};
}

async function verify(blob, contentType) {
  showError(null, "verify");
  $("result").setAttribute("aria-busy", "true");
  try {
    // The bytes themselves (not the Blob): what was sent is then visible to the browser's tools.
    const body = await blob.arrayBuffer();
    const response = await call("/v1/liveness:verify", body, contentType || "application/octet-stream", profileParams());
    showResult(response);
    return response;
  } catch (error) {
    $("result").hidden = true;
    showError(error, "verify");
    return null;
  } finally {
    $("result").removeAttribute("aria-busy");
  }
}

function label(name) {
  const words = name.replace(/([A-Z])/g, " $1").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function formatValue(value) {
  if (typeof value === "number") {
    return Number.isInteger(value) ? String(value) : value.toFixed(Math.abs(value) >= 10 ? 1 : 3);
  }
  if (typeof value === "boolean") return value ? "yes" : "no";
  return String(value);
}

function showResult(response) {
  const quality = response.quality || {};
  const decisionElement = $("decision");
  const qualityFailed = response.status === "VERIFY_STATUS_QUALITY_FAILED";
  const decision = String(response.decision || "").replace(/^LIVENESS_DECISION_/, "");
  if (qualityFailed) {
    const reasons = (quality.reasons || []).map(instructionFor);
    decisionElement.dataset.decision = "QUALITY_FAILED";
    decisionElement.textContent = "PHOTO NOT USABLE";
    $("decision-detail").textContent = reasons.length ? reasons.join(". ") + "." : "The quality gate rejected it.";
  } else {
    const [word, detail] = DECISIONS[decision] || [decision || "UNKNOWN", ""];
    decisionElement.dataset.decision = word;
    decisionElement.textContent = word;
    $("decision-detail").textContent = detail;
  }
  const scored = !qualityFailed;
  $("score-block").hidden = !scored;
  if (scored) {
    const score = Number(response.livenessScore || 0);
    const threshold = Number(response.threshold || 0);
    $("score").textContent = score.toFixed(3) + (score >= threshold ? " (at or above the threshold)" : " (below the threshold)");
    $("threshold").textContent = threshold.toFixed(3);
    $("result-profile").textContent = response.profile || "default";
    $("score-fill").style.width = Math.min(100, Math.max(0, score * 100)) + "%";
    $("score-threshold").style.left = Math.min(100, Math.max(0, threshold * 100)) + "%";
  }
  $("model-version").textContent = response.modelVersion || "";
  const body = $("scores").querySelector("tbody");
  const rows = Object.entries(quality.scores || {}).map(([name, value]) => {
    const row = document.createElement("tr");
    const head = document.createElement("th");
    head.scope = "row";
    head.textContent = label(name);
    const cell = document.createElement("td");
    cell.textContent = formatValue(value);
    row.append(head, cell);
    return row;
  });
  body.replaceChildren(...rows);
  $("result").hidden = false;
  $("result").dataset.status = response.status || "";
}

async function capture() {
  if (!state.passed) return;
  $("capture").disabled = true;
  try {
    const blob = await frameBlob(0, CAPTURE_QUALITY);
    if (blob) {
      const response = await verify(blob, "image/jpeg");
      if (response) $("result-heading").focus({ preventScroll: false });
    }
  } finally {
    $("capture").disabled = !state.passed;
  }
}

async function upload(event) {
  const file = event.target.files && event.target.files[0];
  if (!file) return;
  const response = await verify(file, file.type || "application/octet-stream");
  if (response) $("result-heading").focus({ preventScroll: false });
}

document.addEventListener("DOMContentLoaded", () => {
  const key = sessionStorage.getItem("ekyc-api-key");
  if (key) $("api-key").value = key;
  $("api-key").addEventListener("change", () => sessionStorage.setItem("ekyc-api-key", $("api-key").value.trim()));
  $("key-form").addEventListener("submit", (event) => event.preventDefault());
  $("result-heading").tabIndex = -1;
  $("capture").addEventListener("click", capture);
  $("camera-toggle").addEventListener("click", () => (state.stream ? stopCamera() : startCamera()));
  $("upload").addEventListener("change", upload);
  startCamera();
});
