// The verify page: hands a receipt bundle to the in-browser verifier (web/src/verify.js,
// loaded from this exchange, with sm-crypto's SM2/SM3 loaded by the page) and shows each
// step with the values it compared. The result element (#result) carries data-verdict
// ("verified" or "failed"; "pending" while a fetched receipt is not anchored yet, "error"
// when the verifier could not run) and data-step: the failing step ("format" for text
// that is not a v1 bundle), or the last one checked; data-inconclusive="true" when the
// chain could not be read (nothing found wrong, nothing proven).

const form = document.getElementById("verify-form");
const result = document.getElementById("result");
const verdictText = document.getElementById("verdict-text");
const stepsList = document.getElementById("steps");
const bundleInput = document.getElementById("bundle");
const labels = Object.fromEntries(JSON.parse(form.dataset.steps)); // [[step, label], …] in order

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
    const ran = step && step.ok !== null && step.ok !== undefined;
    const item = el("li", { "data-step": name, "data-ok": ran ? String(step.ok) : "" },
      el("span", { class: "step-label" }, labels[name] || name), " ",
      el("span", { class: "step-state" }, ran ? (step.ok ? "✓ 通过 ok" : "✗ 失败 failed") : "— 未检查 not checked"));
    if (ran && step.message) item.append(el("p", { class: "step-message" }, step.message));
    if (step && step.compared && step.compared.length) {
      const rows = step.compared.map((c) =>
        // highlighted where a failed step's values differ (a passed step may compare a
        // range with a value: not a difference)
        el("tr", { class: step.ok === false && String(c.expected) !== String(c.actual) ? "differs" : "same" },
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

function renderSubject(subject) {
  const box = document.getElementById("subject");
  if (!subject) {
    box.hidden = true;
    return;
  }
  const labelsOf = { type: "类型 Type", actor: "签名方 Actor", timestamp: "签名时间 Signed (ms)",
    index: "序号 Index", tree_size: "树大小 Tree size", root: "根 Root", chain_id: "链 Chain id",
    registry_address: "收据所指登记合约 Registry named by the bundle", tx_hash: "交易 Tx" };
  const list = el("dl", { class: "kv" });
  for (const [name, value] of Object.entries(subject)) {
    list.append(el("dt", {}, labelsOf[name] || name), el("dd", {}, el("code", {}, String(value))));
  }
  box.replaceChildren(el("h2", {}, "收据内容 What the receipt claims"), list);
  box.hidden = false;
}

async function verify(text) {
  resetSteps();
  renderSubject(null);
  delete result.dataset.inconclusive;
  show("running", null, "验证中 Verifying…");
  const pinnedKey = document.getElementById("log-key").value.trim();
  const options = {
    rpcUrl: document.getElementById("rpc-url").value.trim(),
    registryAddress: document.getElementById("registry").value.trim(),
    minConfirmations: Number(document.getElementById("min-confirmations").value) || 1,
    fetch: window.fetch.bind(window),
  };
  if (pinnedKey) options.trustedLogKey = pinnedKey;
  let outcome;
  try {
    const { verifyBundle } = await import(form.dataset.verifier);
    // the text itself: the verifier parses it strictly (floats, duplicate names)
    outcome = await verifyBundle(text, options);
  } catch (error) {
    show("error", null, `验证器出错 The verifier could not run: ${error.message}`);
    return;
  }
  const steps = outcome.steps || [];
  renderSteps(steps);
  renderSubject(outcome.subject);
  if (outcome.verdict === "verified") {
    const checked = steps.filter((s) => s.ok === true).map((s) => s.step);
    show("verified", checked[checked.length - 1] || null,
      "✓ 已验证 Verified: 记录在日志中，其检查点已锚定上链 the record is in the log and its checkpoint is anchored on chain.");
    return;
  }
  const step = outcome.failedStep || "format";
  if (outcome.inconclusive) result.dataset.inconclusive = "true";
  const what = step === "format" ? "收据格式 Bundle format" : labels[step] || step;
  show("failed", step, `✗ 验证失败 Failed at ${what}${outcome.inconclusive ? " (无法读取链 chain unreadable: inconclusive)" : ""}: ${outcome.message || ""}`);
}

async function fetchReceipt(index) {
  show("running", null, `取回收据 Fetching receipt ${index}…`);
  const response = await fetch(`/receipts/${encodeURIComponent(index)}`, { headers: { accept: "application/json" } });
  const text = await response.text();
  if (response.ok) {
    bundleInput.value = text; // as served: the verifier reads the exact text
    await verify(text);
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
