// The playground: a page on @imagegate/client (./client.js, bundled from clients/js) and
// no framework. It talks to the server that serves it, with no credential when auth is
// off, or with a browser token from the field or from the URL (#token=…).
import {
  APIError,
  AuthenticationError,
  BudgetExceededError,
  ContentPolicyError,
  ImageGateClient,
  PermissionDeniedError,
  RateLimitError,
  ValidationError,
} from "/playground/client.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "imagegate-playground-token";
let client = connect(takeToken());
let running = null; // the job being followed: { id }
let pages = null; // the gallery's page iterator

function takeToken() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    window.history.replaceState(null, "", location.pathname + location.search); // out of sight
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function connect(token) {
  // A playground should say "rate limited" at once rather than wait out a long Retry-After.
  return new ImageGateClient(location.origin, { ...(token ? { token } : {}), maxRetryAfterS: 2 });
}

async function start() {
  try {
    await loadChoices();
    $("auth").hidden = true;
    await loadHistory(true);
  } catch (error) {
    showError(error);
  }
}

async function loadChoices() {
  const [styles, templates] = await Promise.all([client.styles(), client.templates()]);
  $("style").replaceChildren(option("", "none"), ...styles.map((s) => option(s.name, s.name.replace(/_/g, " "))));
  $("template").replaceChildren(...templates.map((t) => option(t.name, t.name.replace(/_/g, " "))));
  $("template").templates = templates;
  showTemplateInputs();
}

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

function showTemplateInputs() {
  const chosen = ($("template").templates ?? []).find((t) => t.name === $("template").value);
  $("template-about").textContent = chosen ? `${chosen.description} (“${chosen.template}”)` : "";
  $("template-inputs").replaceChildren(
    ...(chosen?.inputs ?? []).map((input) => {
      const label = document.createElement("label");
      label.textContent = input.name + (input.required ? "" : " (optional)");
      const field = document.createElement("input");
      field.name = input.name;
      field.dataset.input = "";
      field.placeholder = input.description;
      label.append(field);
      return label;
    }),
  );
}

function readForm() {
  // By id, not as form.style or form.size: those names are the form element's own properties.
  const [width, height] = $("size").value.split("x").map(Number);
  const params = { width, height, n: Number($("n").value) || 1 };
  if (templateMode()) {
    params.template = $("template").value;
    const fields = [...$("template-inputs").querySelectorAll("[data-input]")].filter((f) => f.value !== "");
    params.inputs = Object.fromEntries(fields.map((f) => [f.name, f.value]));
  } else {
    params.prompt = $("prompt").value;
  }
  if ($("style").value) params.style = $("style").value;
  if ($("seed").value !== "") params.seed = Number($("seed").value);
  return params;
}

function templateMode() {
  return document.querySelector("input[name=mode]:checked").value === "template";
}

async function generate(event) {
  event.preventDefault();
  resetRun();
  setBusy(true);
  try {
    const created = await client.jobs.createWithDetails(readForm());
    const { job } = created;
    running = { id: job.id };
    $("details").textContent = job.id;
    setStatus(job.status === "pending_review" ? "Held for a reviewer." : "Submitted.");
    if (job.warnings.length) showMessage("limited", `Warnings: ${job.warnings.join("; ")}`);
    const slots = makeSlots(job);
    const final = await client.progressiveImage(slots[0], job, {
      onQueue: ({ position, etaS }) => setStatus(queueText(position, etaS)),
      onEvent: (e) => e.type === "started" && setStatus("Generating…"),
      onProgress: ({ step, total }) => setProgress(step, total),
    });
    slots.slice(1).forEach((img, index) => client.progressiveImage(img, final, { index: index + 1 }));
    report(final, created.cacheStatus);
  } catch (error) {
    showError(error);
  } finally {
    running = null;
    setBusy(false);
    loadHistory(true).catch(showError);
  }
}

async function cancel() {
  if (running === null) return;
  $("cancel").disabled = true;
  setStatus("Canceling…");
  try {
    await client.jobs.cancel(running.id); // the stream then tells of the end
  } catch (error) {
    if (!(error instanceof APIError && error.status === 409)) showError(error); // 409: it ended first
  }
}

function makeSlots(job) {
  const slots = Array.from({ length: job.n }, (_, index) => {
    const img = document.createElement("img");
    img.alt = `image ${index + 1} of “${job.prompt || job.full_prompt}”`;
    img.dataset.index = String(index);
    return img;
  });
  $("results").replaceChildren(...slots);
  return slots;
}

function report(job, cacheStatus) {
  $("progress").hidden = true;
  if (job.status === "completed") {
    const meta = job.metadata;
    const cached = meta?.cache === "hit" || (cacheStatus ?? "").includes("hit") ? " · from the cache" : "";
    setStatus(`Done in ${meta ? meta.generation_time_ms : "?"} ms${cached}.`);
    $("details").textContent = `${job.id} · seed ${job.seed} · ${job.width}×${job.height} · cost ${cost(job)}`;
  } else if (job.status === "canceled") {
    setStatus("Canceled.");
    showMessage("canceled", "The job was canceled on the server; a job canceled before it ran costs nothing.");
  } else {
    setStatus("Failed.");
    showMessage("error", `The job failed: ${job.error?.message ?? "no reason given"} (${job.error?.code ?? "?"}).`);
  }
}

function showError(error) {
  if (error instanceof AuthenticationError) return askForToken(error);
  setStatus("Not generated.");
  $("progress").hidden = true;
  if (error instanceof ContentPolicyError) {
    const why = error.categories.length ? ` (${error.categories.join(", ")})` : "";
    return showMessage("refused", `Refused by the content policy${why}: ${error.detail}`);
  }
  if (error instanceof RateLimitError) {
    const wait = error.retryAfterS === null ? "" : ` Try again in ${Math.ceil(error.retryAfterS)} s.`;
    return showMessage("limited", `Rate limited${error.policy ? ` (${error.policy})` : ""}.${wait}`);
  }
  if (error instanceof BudgetExceededError) return showMessage("budget", `Budget reached: ${error.detail}`);
  if (error instanceof PermissionDeniedError) return showMessage("error", `Not allowed: ${error.detail}`);
  if (error instanceof ValidationError) {
    return showMessage("error", `${error.field ? `${error.field}: ` : ""}${error.detail}`);
  }
  showMessage("error", error instanceof APIError ? `${error.code}: ${error.detail}` : String(error.message ?? error));
}

function askForToken(error) {
  $("auth").hidden = false;
  const refused = sessionStorage.getItem(TOKEN_KEY) !== null;
  $("auth-reason").textContent = refused ? `The token was refused: ${error.detail}` : "";
  setStatus("Waiting for a token.");
}

async function loadHistory(reset) {
  if (reset) pages = client.jobs.pages({ limit: 12 });
  const next = await pages.next();
  const jobs = next.done ? [] : next.value.data;
  const cards = jobs.map(card);
  if (reset) $("gallery").replaceChildren(...cards);
  else $("gallery").append(...cards);
  if (reset && jobs.length === 0) $("gallery").replaceChildren(emptyNote());
  $("more").hidden = next.done || next.value.next_cursor === null;
}

function card(job) {
  const item = document.createElement("li");
  item.dataset.job = job.id;
  item.dataset.status = job.status;
  if (job.status === "completed" && job.images.length) {
    const img = document.createElement("img");
    img.alt = job.prompt || job.full_prompt;
    img.loading = "lazy";
    item.append(img);
    client.progressiveImage(img, job).catch(() => undefined);
  }
  const prompt = document.createElement("p");
  prompt.className = "prompt";
  prompt.textContent = job.prompt || job.full_prompt;
  prompt.title = job.full_prompt;
  const meta = document.createElement("p");
  meta.className = "meta";
  meta.append(span(job.status), span(cost(job), "cost"));
  item.append(prompt, meta);
  return item;
}

function span(text, className = "") {
  const element = document.createElement("span");
  element.textContent = text;
  element.className = className;
  return element;
}

function emptyNote() {
  const item = document.createElement("li");
  item.className = "empty";
  item.textContent = "Nothing yet: your jobs will show here.";
  return item;
}

function cost(job) {
  if (!job.cost) return "no cost";
  const amount = job.cost.amount.toLocaleString(undefined, { maximumFractionDigits: 4 });
  return `${amount} ${job.cost.currency}${job.cost.estimated ? " (est.)" : ""}`;
}

function queueText(position, etaS) {
  if (position === null) return "Waiting to be retried…";
  const ahead = position === 0 ? "next in line" : `${position} ahead`;
  return `Queued: ${ahead}${etaS === null ? "" : `, about ${Math.max(1, Math.round(etaS))} s`}.`;
}

function setProgress(step, total) {
  $("progress").hidden = false;
  $("progress").max = total;
  $("progress").value = step;
  setStatus(`Step ${step} of ${total}.`);
}

function setStatus(text) {
  $("status").textContent = text;
}

function showMessage(kind, text) {
  $("message").className = kind;
  $("message").textContent = text;
  $("message").hidden = false;
}

function resetRun() {
  $("message").hidden = true;
  $("details").textContent = "";
  $("results").replaceChildren();
  $("progress").value = 0;
}

function setBusy(busy) {
  $("submit").disabled = busy;
  $("cancel").disabled = !busy;
}

$("generate").addEventListener("submit", generate);
$("cancel").addEventListener("click", cancel);
$("more").addEventListener("click", () => loadHistory(false).catch(showError));
$("template").addEventListener("change", showTemplateInputs);
for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => {
    const template = templateMode();
    $("template-fields").hidden = !template;
    $("prompt-fields").hidden = template;
  });
}
$("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  client = connect(sessionStorage.getItem(TOKEN_KEY));
  start();
});
window.addEventListener("hashchange", () => {
  client = connect(takeToken());
  start();
});
start();
