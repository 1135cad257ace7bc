// The verify page: hands a receipt bundle to the in-browser verifier (web/src/verify.js,
// loaded from this exchange) and shows each step with the values it compared.
// The result element (#result) carries data-verdict ("verified", "failed", "pending",
// "error") and data-step (the failing step, or the last one checked).

const form = document.getElementById("verify-form");
const result = document.getElementById("result");
const verdictText = document.getElementById("verdict-text");
const stepsList = document.getElementById("steps");
const bundleInput = document.getElementById("bundle");
const labels = JSON.parse(form.dataset.steps);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function show(verdict, step, text) {
  result.dataset.verdict = verdict;
  if (step) result.dataset.step = step;
  else delete result.dataset.step;
  verdictText.textContent = text;
}

function resetSteps() {
  stepsList.replaceChildren(
    ...Object.entries(labels).map(([name, label]) =>
      el("li", { "data-step": name, "data-ok": "" }, el("span", { class: "step-label" }, label),
        " ", el("span", { class: "step-state" }, "—")))
  );
}

function renderSteps(steps) {
  const byName = new Map(steps.map((s) => [s.step, s]));
  const names = [...Object.keys(labels), ...steps.map((s) => s.step).filter((n) => !(n in labels))];
  stepsList.replaceChildren(...names.map((name) => {
    const step = byName.get(name);
    const item = el("li", { "data-step": name, "data-ok": step ? String(step.ok) : "" },
      el("span", { class: "step-label" }, labels[name] || name), " ",
      el("span", { class: "step-state" }, step ? (step.ok ? "✓ 通过 ok" : "✗ 失败 failed") : "— 未检查 not checked"));
    if (step && step.message) item.append(el("p", { class: "step-message" }, step.message));
    if (step && step.compared && step.compared.length) {
      const rows = step.compared.map((c) =>
        el("tr", { class: c.expected === c.actual ? "same" : "differs" },
          el("th", { scope: "row" }, String(c.label)),
          el("td", {}, el("code", {}, String(c.expected))),
          el("td", {}, el("code", {}, String(c.actual)))));
      item.append(el("div", { class: "scroll" }, el("table", { class: "compared" },
        el("thead", {}, el("tr", {}, el("th", {}, "比较 Compared"), el("th", {}, "期望 Expected"), el("th", {}, "实际 Actual"))),
        el("tbody", {}, ...rows))));
    }
    return item;
  }));
}

async function verify(text) {
  resetSteps();
  let bundle;
  try {
    bundle = JSON.parse(text);
  } catch (error) {
    show("failed", "bundle", `不是 JSON Not JSON: ${error.message}`);
    return;
  }
  show("running", null, "验证中 Verifying…");
  const options = {
    rpcUrl: document.getElementById("rpc-url").value.trim(),
    registryAddress: document.getElementById("registry").value.trim(),
    minConfirmations: Number(document.getElementById("min-confirmations").value) || 1,
    fetch: window.fetch.bind(window),
  };
  try {
    const { verifyBundle } = await import(form.dataset.verifier);
    const outcome = await verifyBundle(bundle, options);
    renderSteps(outcome.steps || []);
    const checked = (outcome.steps || []).map((s) => s.step);
    if (outcome.verdict === "verified") {
      show("verified", checked[checked.length - 1] || null, "✓ 已验证 Verified: 记录在日志中且其检查点已上链 the record is in the log and its checkpoint is on chain.");
    } else {
      const failed = (outcome.steps || []).find((s) => !s.ok);
      show("failed", outcome.failedStep || (failed && failed.step) || null,
        `✗ 验证失败 Failed at ${labels[outcome.failedStep] || outcome.failedStep}: ${(failed && failed.message) || ""}`);
    }
  } catch (error) {
    show("error", null, `验证器出错 The verifier could not finish: ${error.message}`);
  }
}

async function fetchReceipt(index) {
  show("running", null, `取回收据 Fetching receipt ${index}…`);
  const response = await fetch(`/receipts/${encodeURIComponent(index)}`, { headers: { accept: "application/json" } });
  const text = await response.text();
  if (response.ok) {
    bundleInput.value = JSON.stringify(JSON.parse(text), null, 2);
    await verify(bundleInput.value);
    return;
  }
  let body = {};
  try { body = JSON.parse(text); } catch { /* not JSON: shown as the status */ }
  if (body.code === "receipt_pending") {
    show("pending", null, `收据尚未就绪 Not anchored yet: ${body.message}. 请稍后重试 Retry in a minute.`);
  } else {
    show("error", null, `无法取回 Cannot fetch receipt ${index}: ${body.code || response.status} ${body.message || ""}`);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  verify(bundleInput.value);
});

document.getElementById("bundle-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (file) {
    bundleInput.value = await file.text();
    await verify(bundleInput.value);
  }
});

const drop = document.getElementById("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) {
    bundleInput.value = await file.text();
    await verify(bundleInput.value);
  }
});

if (form.dataset.index !== "") fetchReceipt(form.dataset.index);
