// Tether console: a manager's view of the fleet. Plain JavaScript, no
// dependencies, served from the binary. The session's tokens live in this
// page's memory only (never in storage or cookies), so no other site can
// use them and a reload asks to sign in again.
"use strict";

const state = { access: "", refresh: "", expiresAt: 0, user: null, cursors: [""], page: 0, auditCursor: "", device: null };

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// h builds an element; children are nodes or text, never HTML.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function flash(text, bad = false) {
  const f = $("#flash");
  f.textContent = text;
  f.classList.toggle("bad", bad);
  f.hidden = !text;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
// at is a time as an element, with the exact instant in its datetime.
const at = (iso) => (iso ? h("time", { datetime: iso }, when(iso)) : "—");

class APIError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

// api calls the server with the session's token, refreshing it first when
// it is about to expire.
async function api(method, path, body, { accept = "application/json", raw = false, form = null } = {}) {
  if (state.refresh && Date.now() > state.expiresAt - 30_000 && path !== "/v1/auth/refresh") await refresh();
  const headers = { Accept: accept };
  if (state.access) headers.Authorization = `Bearer ${state.access}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers, body: payload, credentials: "omit", cache: "no-store" });
  if (raw && resp.ok) return resp;
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    if (resp.status === 401 && state.access && path !== "/v1/auth/login") signedOut("Your session has ended: sign in again.");
    throw new APIError(resp.status, data);
  }
  return data;
}

function keep(tokens) {
  state.access = tokens.accessToken;
  state.refresh = tokens.refreshToken || state.refresh;
  state.expiresAt = Date.parse(tokens.expiresAt);
  if (tokens.user) state.user = tokens.user;
}

async function refresh() {
  const tokens = await api("POST", "/v1/auth/refresh", { refreshToken: state.refresh, deviceId: "" });
  keep(tokens);
}

function signedOut(message) {
  Object.assign(state, { access: "", refresh: "", expiresAt: 0, user: null, factors: null });
  loginStep("password");
  forgetSecurity();
  $("#top").hidden = true;
  showRoleItems();
  hideSecret();
  show("login");
  flash(message || "", !!message);
}

// actorText names who acted ("user:…", "apikey:…", "code:…" or "cli")
// by the name the server found for it, never by an id.
function actorText(actor, name) {
  switch ((actor || "").split(":")[0]) {
    case "": return "—";
    case "user": return name || "a user";
    case "apikey": return name ? `API key ${name}` : "a revoked API key";
    case "code": return name ? `enrollment code “${name}”` : "an enrollment code";
    case "cli": return "the command line";
  }
  return name || actor;
}

// userLink shows a user by username, linked to their page.
const userLink = (id, username) => (id ? h("a", { href: `#user/${encodeURIComponent(id)}` }, username || "a user") : username || "—");

// handsetCell shows a handset by IMEI (linked to its page), its label
// beneath. A device the server could not name (a name a legacy client
// gave, not an enrolled handset) shows as it was given.
function handsetCell(id, imei, label) {
  if (!id) return "—";
  if (!imei) return h("span", { class: "mono" }, id);
  return [h("a", { href: `#device/${encodeURIComponent(id)}`, class: "mono" }, imei), label ? h("div", { class: "muted small" }, label) : null];
}

// problemText turns a problem into one readable line, naming bad fields.
function problemText(err) {
  const p = err.problem || {};
  const fields = (p.errors || []).map((e) => `${e.field}: ${e.message}`);
  return fields.length ? `${err.message}: ${fields.join("; ")}` : err.message;
}

// ---- navigation ----

const views = ["login", "fleet", "racks", "device", "users", "user", "enroll", "audit", "security", "clients"];
// A handset's page belongs to the fleet, a user's to the users.
const section = { device: "fleet", user: "users" };

// showRoleItems shows what is for one role (data-role) to that role
// alone, and hides it from everyone when no one is signed in. The server
// refuses the others anyway: this only spares them a button that fails.
function showRoleItems() {
  for (const el of $$("[data-role]")) el.hidden = !state.user || el.dataset.role !== state.user.role;
}

function show(name) {
  for (const v of views) $(`#${v}-view`).hidden = v !== name;
  for (const a of $$("[data-nav]")) a.toggleAttribute("aria-current", a.dataset.nav === (section[name] || name));
  const heading = $(`#${name}-view h1`);
  if (heading) heading.setAttribute("tabindex", "-1");
}

async function route() {
  if (!state.access) return show("login");
  const [name, arg] = location.hash.slice(1).split("/");
  flash("");
  hideSecret();
  forgetSecurity();
  try {
    switch (name) {
      case "users": show("users"); await loadUsers(); break;
      case "racks": show("racks"); await loadRacks(decodeURIComponent(arg || "")); break;
      case "enroll": show("enroll"); await loadCodes(); break;
      case "audit": show("audit"); state.auditCursor = ""; await loadAudit(false); await loadSinks(); break;
      case "security": show("security"); await loadSecurity(); break;
      case "device": show("device"); await loadDevice(decodeURIComponent(arg || "")); break;
      case "user": show("user"); await loadUser(decodeURIComponent(arg || "")); break;
      case "clients":
        if (state.user.role === "admin") { show("clients"); await loadClients(); break; }
        show("fleet"); await loadFleet(); break;
      default: show("fleet"); await loadFleet();
    }
  } catch (err) {
    if (state.access) flash(problemText(err), true);
  }
}

// ---- fleet ----

function badge(status) {
  return h("span", { class: `badge ${status}`, "data-status": status }, status);
}

function fleetQuery(cursor) {
  const f = new FormData($("#fleet-filter"));
  const q = new URLSearchParams({ limit: "25" });
  for (const k of ["q", "status", "group"]) if (f.get(k)) q.set(k, f.get(k));
  if (cursor) q.set("cursor", cursor);
  return q;
}

async function loadFleet() {
  const page = await api("GET", `/v1/devices?${fleetQuery(state.cursors[state.page])}`);
  const body = $("#fleet-table tbody");
  body.replaceChildren(...page.items.map((d) => h("tr", {},
    h("td", {}, h("a", { href: `#device/${encodeURIComponent(d.id)}`, class: "mono" }, d.imei)),
    h("td", {}, d.label || "—"),
    h("td", {}, d.group || "—"),
    h("td", { class: "nowrap" }, modeText(d)),
    h("td", {}, badge(d.status)),
    h("td", {}, when(d.lastSeenAt)),
    h("td", {}, d.osVersion ? `${d.osVersion.name} (API ${d.osVersion.api})` : "—"),
    h("td", {}, d.appVersion || "—"),
    h("td", {}, d.assignedUsers.length ? d.assignedUsers.join(", ") : "any worker"),
  )));
  if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No handsets match.")));
  state.cursors[state.page + 1] = page.nextCursor || null;
  $("#fleet-prev").disabled = state.page === 0;
  $("#fleet-next").disabled = !page.nextCursor;
  $("#fleet-page").textContent = `Page ${state.page + 1}`;
}

async function loadDevice(id) {
  const d = await api("GET", `/v1/devices/${encodeURIComponent(id)}`);
  state.device = d;
  $("#device-title").textContent = `Handset ${d.imei}`;
  const rows = [
    ["Status", badge(d.status)], ["Id", d.id], ["IMEI", d.imei], ["Label", d.label || "—"], ["Group", d.group || "—"],
    ["Mode", modeDetail(d)],
    ["SIMs", d.iccIds.length ? d.iccIds.join(", ") : "—"],
    ["Android", d.osVersion ? `${d.osVersion.name} (API ${d.osVersion.api})` : "—"],
    ["Model", d.deviceInfo ? `${d.deviceInfo.manufacturer} ${d.deviceInfo.model}` : "—"],
    ["App", d.appVersion || "—"], ["Assigned users", d.assignedUsers.join(", ") || "any worker"], ["Notes", d.notes || "—"],
    ["Last seen", when(d.lastSeenAt)], ["Enrolled", `${when(d.enrolledAt)} by ${actorText(d.enrolledBy, d.enrolledByName)}`],
  ];
  if (d.statusChangedAt) rows.push(["Status changed", `${when(d.statusChangedAt)} by ${actorText(d.statusChangedBy, d.statusChangedByName)}`]);
  if (d.statusReason) rows.push(["Reason", d.statusReason]);
  rows.push(["Key", d.key ? `${d.key.type} ${d.key.thumbprint.slice(0, 12)}…, since ${when(d.key.enrolledAt)}` : "none: tokens bound to the device id only"]);
  if (d.key) {
    rows.push(["Attestation", d.key.attested
      ? [d.key.securityLevel, `boot ${d.key.verifiedBootState}`, d.key.attestedImei && `IMEI ${d.key.attestedImei}`,
        d.key.attestedSerial && `serial ${d.key.attestedSerial}`].filter(Boolean).join(", ")
      : "none"]);
  }
  $("#device-details").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));

  const actions = [];
  if (d.status === "enrolled") actions.push(["suspend", "Suspend"], ["retire", "Retire"]);
  if (d.status === "suspended") actions.push(["reinstate", "Reinstate"], ["retire", "Retire"]);
  if (d.status === "retired") actions.push(["reinstate", "Reinstate"]);
  $("#device-actions").replaceChildren(h("button", { type: "button", class: "quiet", id: "device-edit", onclick: editDevice }, "Edit"),
    ...actions.map(([op, label]) =>
      h("button", { type: "button", class: op === "reinstate" ? "" : "danger", "data-op": op, onclick: () => lifecycle(op, label) }, label)));

  const [sessions, events] = await Promise.all([
    api("GET", `/v1/sessions?deviceId=${encodeURIComponent(d.id)}`),
    api("GET", `/v1/audit?deviceId=${encodeURIComponent(d.id)}&order=desc&limit=200`),
  ]);
  $("#device-sessions tbody").replaceChildren(...sessions.items.map((s) => h("tr", {},
    h("td", {}, userLink(s.userId, s.username)), h("td", {}, at(s.createdAt)), h("td", {}, at(s.lastUsedAt)), h("td", {}, s.clientIp || "—"),
    h("td", {}, h("button", { type: "button", class: "quiet", onclick: () => endSession(s.id, () => loadDevice(d.id)) }, "End")))));
  if (!sessions.items.length) $("#device-sessions tbody").append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No one is logged in on this handset.")));
  $("#device-audit tbody").replaceChildren(...events.items.map((e) => h("tr", {},
    h("td", {}, at(e.time)), h("td", {}, e.action), h("td", {}, e.outcome + (e.reason ? ` (${e.reason})` : "")),
    h("td", {}, e.actor ? actorText(e.actor, e.actorName) : e.username || "—"), h("td", {}, e.clientIp || "—"))));
}

// handsetModes are the modes a handset can be given, as its forms offer
// them (the register and edit dialogs' [data-handset-modes] selects).
const handsetModes = [
  ["group", "Its group's: as the group's settings say"],
  ["personal", "Personal: its assigned users, or any worker"],
  ["shared", "Shared: picked up for a shift by a worker of its group"],
];

// modeText is a handset's mode and where it comes from: "shared (group)"
// follows its group's settings, "shared (handset)" is its own.
function modeText(d) {
  if (!d.mode) return "—";
  const group = d.modeSource === "group";
  return h("span", { "data-mode": d.mode, "data-mode-source": d.modeSource, title: group ? "its group's mode" : "set on this handset" },
    `${d.mode} (${group ? "group" : "handset"})`);
}

// modeDetail says the same at length, for a handset's page.
function modeDetail(d) {
  if (!d.mode) return "—";
  const how = d.modeSource === "group"
    ? d.group ? `from its group ${d.group}` : "the default of handsets in no group"
    : "set on this handset";
  return h("span", { "data-mode": d.mode, "data-mode-source": d.modeSource }, `${d.mode}, ${how}`);
}

// editDevice edits a handset's label, group, assigned users, notes and
// mode.
function editDevice() {
  const d = state.device;
  const dlg = openDialog("#device-dialog");
  $("#device-edit-title").textContent = `Edit handset ${d.imei}`;
  const form = $("#device-form");
  form.elements.label.value = d.label;
  form.elements.group.value = d.group;
  form.elements.assignedUsers.value = d.assignedUsers.join(", ");
  form.elements.notes.value = d.notes;
  form.elements.mode.value = d.modeSource === "handset" ? d.mode : "group";
  form.onsubmit = (e) => submitDialog(e, dlg, async (f) => {
    await api("PATCH", `/v1/devices/${encodeURIComponent(d.id)}`, {
      label: f.get("label"), group: f.get("group"), assignedUsers: list(f.get("assignedUsers")), notes: f.get("notes"), mode: f.get("mode"),
    });
    flash(`Handset ${d.imei} saved.`);
    await loadDevice(d.id);
  });
}

// confirming answers the question asked last, until its dialog's close
// event (which comes in a later task) has answered it.
let confirming = null;

function confirmAction(text, withReason) {
  const dlg = $("#confirm-dialog");
  // A question asked at once after the last one was answered: that one's
  // close event is still on its way. Answer it now, from its own dialog,
  // before this one reuses the dialog.
  if (confirming) confirming();
  $("#confirm-text").textContent = text;
  $("#confirm-reason-label").hidden = !withReason;
  $("#confirm-reason").value = "";
  dlg.returnValue = "";
  dlg.showModal();
  return new Promise((resolve) => {
    const answer = () => {
      // The last question's close event, come late: this one is open.
      if (dlg.open) return;
      dlg.removeEventListener("close", answer);
      confirming = null;
      resolve(dlg.returnValue === "yes" ? $("#confirm-reason").value : null);
    };
    confirming = answer;
    dlg.addEventListener("close", answer);
  });
}

async function lifecycle(op, label) {
  const d = state.device;
  const warn = op === "reinstate" ? "It may log in again." : "Every session on it ends at once.";
  const reason = await confirmAction(`${label} handset ${d.imei}? ${warn}`, true);
  if (reason === null) return;
  try {
    await api("POST", `/v1/devices/${encodeURIComponent(d.id)}/${op}`, { reason });
    flash(`Handset ${d.imei}: ${op} done.`);
    await loadDevice(d.id);
  } catch (err) { flash(problemText(err), true); }
}

// endSession ends a session, then shows the page again with reload.
async function endSession(id, reload) {
  if ((await confirmAction("End this session? Its tokens stop working at once.", false)) === null) return;
  try { await api("DELETE", `/v1/sessions/${encodeURIComponent(id)}`); await reload(); }
  catch (err) { flash(problemText(err), true); }
}

// ---- dialogs with forms ----

function openDialog(id) {
  const dlg = $(id);
  const form = $("form", dlg);
  form.reset();
  const errors = $(".errors", dlg);
  if (errors) errors.textContent = "";
  dlg.showModal();
  return dlg;
}

async function submitDialog(event, dlg, action) {
  event.preventDefault();
  await runDialog(dlg, () => action(new FormData(event.target)));
}

// runDialog runs a dialog's action: the dialog closes when it is done,
// or says why not.
async function runDialog(dlg, action) {
  const errors = $(".errors", dlg);
  try {
    await action();
    dlg.close();
  } catch (err) {
    errors.textContent = problemText(err);
    // A long form scrolls: the reason must show.
    errors.scrollIntoView({ block: "nearest" });
  }
}

const list = (s) => (s || "").split(",").map((x) => x.trim()).filter(Boolean);

// ---- import ----

// resetImport forgets the last check: importing needs a new one.
function resetImport() {
  $("#import-report").textContent = "";
  $("#import-commit").disabled = true;
  $("#import-valid").hidden = true;
}

// runImport checks the file (dryRun), imports it all or nothing, or, with
// skipInvalid, imports its valid rows and lists the invalid ones. The
// summary counts rows; the table lists each problem.
async function runImport(dryRun, skipInvalid = false) {
  const file = $("#import-form input[type=file]").files[0];
  const out = $("#import-report");
  if (!file) { out.textContent = "Choose a file first."; return; }
  const form = new FormData();
  form.append("file", file);
  const q = new URLSearchParams();
  if (dryRun) q.set("dryRun", "true");
  if (skipInvalid) q.set("skipInvalid", "true");
  out.textContent = dryRun ? "Checking…" : "Importing…";
  $("#import-commit").disabled = true;
  $("#import-valid").hidden = true;
  let report;
  try {
    const query = q.toString();
    report = await api("POST", `/v1/devices/import${query ? `?${query}` : ""}`, undefined, { form });
  } catch (err) {
    report = err.problem && err.problem.report;
    if (!report) { out.textContent = problemText(err); return; }
  }
  const rows = (n) => `${n} ${n === 1 ? "row" : "rows"}`;
  let summary;
  if (report.dryRun) {
    summary = `${rows(report.rows)}: ${report.valid} ready to import, ${report.invalid} with errors, ${report.skipped} blank.`;
  } else if (report.created) {
    summary = `Imported ${report.created} handsets${report.invalid ? `; ${rows(report.invalid)} with errors were left out` : ""}.`;
  } else {
    summary = `Nothing imported: ${rows(report.invalid)} with errors.`;
  }
  const issues = [...report.errors.map((e) => ["error", e]), ...report.warnings.map((w) => ["warning", w])];
  out.replaceChildren(h("p", { class: report.invalid && !report.created ? "bad" : "good", id: "import-summary" }, summary),
    issues.length ? h("table", { class: "compact" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Row"), h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Problem"))),
      h("tbody", {}, issues.map(([kind, e]) => h("tr", { class: kind }, h("td", {}, e.row), h("td", {}, e.field || "—"), h("td", {}, `${e.message} (${e.code})`))))) : "");
  if (report.dryRun && report.valid > 0) {
    $("#import-commit").disabled = report.invalid > 0;
    const valid = $("#import-valid");
    valid.hidden = report.invalid === 0;
    valid.textContent = `Import the ${report.valid} valid ${report.valid === 1 ? "row" : "rows"}`;
  }
  if (!report.dryRun && report.created) { state.page = 0; state.cursors = [""]; await loadFleet(); }
}

// ---- exports ----

// exportList downloads the list at path as CSV or XLSX (kind), saved as
// name.kind (by default, the path's last part).
async function exportList(path, kind, name = path.split("/").pop()) {
  const accept = kind === "csv" ? "text/csv" : "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  try {
    const resp = await api("GET", path, undefined, { accept, raw: true });
    const url = URL.createObjectURL(await resp.blob());
    const a = h("a", { href: url, download: `${name}.${kind}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) { flash(problemText(err), true); }
}

// ---- racks of shared handsets, and their groups' settings ----

// rackStates names each state of a shared handset in words, with a mark
// that tells them apart without their colour.
const rackStates = {
  free: { text: "free", mark: "○" },
  in_use: { text: "in use", mark: "●" },
  overdue: { text: "overdue", mark: "!" },
  unreturned: { text: "not returned", mark: "✕" },
  suspended: { text: "suspended", mark: "‖" },
  retired: { text: "retired", mark: "–" },
};

function rackBadge(st) {
  const s = rackStates[st] || { text: st, mark: "" };
  return h("span", { class: `badge rack ${st}`, "data-state": st }, h("span", { class: "mark", "aria-hidden": "true" }, s.mark), s.text);
}

// shortWhen is a time as an element, to the minute in the reader's own
// time zone, with the exact instant in its datetime.
const shortWhen = (iso) => (iso
  ? h("time", { datetime: iso, title: when(iso) }, new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }))
  : "—");

// relative says how far a time is from now: "in 2 h 5 min", "12 min ago".
function relative(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  const min = Math.round(Math.abs(ms) / 60_000);
  const span = min < 1 ? "less than a minute" : min < 60 ? `${min} min` : `${Math.floor(min / 60)} h${min % 60 ? ` ${min % 60} min` : ""}`;
  return ms > 0 ? `in ${span}` : `${span} ago`;
}

// timeCell shows a time and how far it is from now, beneath.
const timeCell = (iso) => (iso ? [shortWhen(iso), h("div", { class: "muted small" }, relative(iso))] : "—");

const rackPath = () => `/v1/rack${state.rackGroup ? `?group=${encodeURIComponent(state.rackGroup)}` : ""}`;

// loadRacks shows the racks of one group ("" for all), and that group's
// settings. The groups to choose from are those with settings, those the
// handsets are in (both listed by /v1/groups), and a scoped manager's own.
async function loadRacks(group) {
  state.rackGroup = group;
  const groups = await api("GET", "/v1/groups");
  // Another group was chosen meanwhile (arrow keys on the list): its
  // answer shows, not this one's.
  if (state.rackGroup !== group) return;
  const names = new Set(groups.items.map((g) => g.name));
  if (state.user.role === "manager") for (const g of state.user.scopes || []) names.add(g);
  if (group) names.add(group);
  names.delete("");
  const withSettings = new Set(groups.items.filter((g) => g.hasSettings).map((g) => g.name));
  const select = $("#rack-group");
  select.replaceChildren(h("option", { value: "" }, "All groups"),
    ...[...names].sort((a, b) => a.localeCompare(b)).map((n) => h("option", { value: n }, withSettings.has(n) ? n : `${n} (no settings)`)));
  select.value = group;
  await Promise.all([loadRack(), loadGroup(group)]);
}

// loadRack shows who holds which shared handset now.
async function loadRack() {
  const page = await api("GET", rackPath());
  const body = $("#rack-table tbody");
  body.replaceChildren(...page.items.map((s) => h("tr", { "data-device": s.deviceId, "data-state": s.state, class: `rack-${s.state}` },
    h("td", {}, handsetCell(s.deviceId, s.imei, s.label)),
    h("td", {}, s.group || "—"),
    h("td", {}, rackBadge(s.state)),
    h("td", { class: "holder" }, s.userId ? userLink(s.userId, s.username) : "—"),
    h("td", {}, timeCell(s.since)),
    h("td", {}, timeCell(s.shiftEnd)),
    h("td", {}, timeCell(s.deadline)))));
  if (!page.items.length) {
    body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" },
      "No shared handsets here. Make a group's handsets shared in its settings below, or one handset shared from its page.")));
  }
  const counts = {};
  for (const s of page.items) counts[s.state] = (counts[s.state] || 0) + 1;
  const n = page.items.length;
  const parts = Object.keys(rackStates).filter((k) => counts[k]).map((k) => `${counts[k]} ${rackStates[k].text}`);
  $("#rack-caption").textContent = state.rackGroup ? `Shared handsets of group ${state.rackGroup}` : "Shared handsets of every group";
  $("#rack-summary").textContent = `${n} shared ${n === 1 ? "handset" : "handsets"}${parts.length ? `: ${parts.join(", ")}` : ""}. As of ${new Date().toLocaleTimeString([], { timeStyle: "short" })}.`;
}

function exportRack(kind) {
  const name = `rack-${state.rackGroup || "all"}`.replace(/[^\p{L}\p{N}._-]+/gu, "-");
  return exportList(rackPath(), kind, name);
}

// loadGroup shows the settings of a group, or asks to choose one.
async function loadGroup(name) {
  const form = $("#group-form");
  clearFieldErrors(form);
  const pick = $("#group-pick");
  pick.textContent = "Choose a group above to see and change its settings.";
  pick.hidden = !!name;
  form.hidden = !name;
  $("#group-settings-title").textContent = name ? `Settings of group ${name}` : "Group settings";
  if (!name) return;
  let g;
  try {
    g = await api("GET", `/v1/groups/${encodeURIComponent(name)}`);
  } catch (err) {
    // A link to a group outside a scoped manager's own.
    if (err.status !== 404) throw err;
    form.hidden = true;
    pick.textContent = `There is no group ${name} among those you manage.`;
    pick.hidden = false;
    return;
  }
  showGroup(g);
}

// showGroup fills the settings form with a group's settings, as the
// server answered them.
function showGroup(g) {
  state.group = g;
  const f = $("#group-form").elements;
  f.mode.value = g.mode;
  f.roster.value = g.roster.join(", ");
  f.suspendUnreturnedAfterMinutes.value = String(g.suspendUnreturnedAfterMinutes);
  f.hasShifts.checked = !!g.shifts;
  f.timeZone.value = g.shifts ? g.shifts.timeZone : "";
  f.boundaries.value = g.shifts ? g.shifts.boundaries.join(", ") : "";
  f.graceMinutes.value = g.shifts ? String(g.shifts.graceMinutes) : "15";
  shiftsShown();
  const by = g.updatedBy && state.user && g.updatedBy === `user:${state.user.id}` ? "you" : actorText(g.updatedBy, g.updatedByName);
  $("#group-about").textContent = g.hasSettings
    ? `Last changed ${when(g.updatedAt)} by ${by}. Sessions already open keep the shift they began in; the next sign-in follows these settings.`
    : "This group has no settings of its own: its handsets are personal and it has no shifts. Saving gives it some.";
  $("#group-remove").disabled = !g.hasSettings;
}

// shiftsShown turns the shift fields on or off with their checkbox; a
// group without shifts sends none.
function shiftsShown() {
  const on = $("#group-has-shifts").checked;
  $("#group-shifts").classList.toggle("off", !on);
  for (const el of $$("#group-shifts input")) el.disabled = !on;
  if (on && !$("#group-form").elements.timeZone.value) {
    $("#group-form").elements.timeZone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  }
}

// wholeMinutes reads a number of minutes from a form field: a whole
// number, "" being 0; anything else is an error of that field.
function wholeMinutes(value, field, errs) {
  const v = (value || "").trim();
  if (v === "") return 0;
  if (!/^\d+$/.test(v)) {
    errs.push({ field, code: "not_whole", message: "a whole number of minutes" });
    return 0;
  }
  return Number(v);
}

async function saveGroup(e) {
  e.preventDefault();
  const form = e.target;
  const g = state.group;
  const f = new FormData(form);
  clearFieldErrors(form);
  const local = [];
  const body = {
    mode: f.get("mode"),
    roster: (f.get("roster") || "").split(/[,\n]/).map((x) => x.trim()).filter(Boolean),
    shifts: null,
    suspendUnreturnedAfterMinutes: wholeMinutes(f.get("suspendUnreturnedAfterMinutes"), "suspendUnreturnedAfterMinutes", local),
  };
  if (f.get("hasShifts")) {
    body.shifts = {
      timeZone: (f.get("timeZone") || "").trim(),
      boundaries: (f.get("boundaries") || "").split(/[\s,;]+/).filter(Boolean),
      graceMinutes: wholeMinutes(f.get("graceMinutes"), "shifts.graceMinutes", local),
    };
  }
  if (local.length) {
    showFieldErrors(form, new APIError(400, { detail: "The settings were not saved", errors: local }), body);
    return;
  }
  const button = $("#group-save");
  button.disabled = true;
  try {
    showGroup(await api("PUT", `/v1/groups/${encodeURIComponent(g.name)}`, body));
    flash(`The settings of group ${g.name} are saved.`);
    const option = $$("#rack-group option").find((o) => o.value === g.name);
    if (option) option.textContent = g.name;
    await loadRack();
  } catch (err) {
    showFieldErrors(form, err, body);
  } finally {
    button.disabled = false;
  }
}

async function removeGroup() {
  const g = state.group;
  const text = `Remove the settings of group ${g.name}? Its handsets stay in the group; from their next sign-in they follow the defaults ` +
    "(personal, no shifts), but for those with a mode of their own.";
  if ((await confirmAction(text, false)) === null) return;
  try {
    await api("DELETE", `/v1/groups/${encodeURIComponent(g.name)}`);
    flash(`The settings of group ${g.name} are removed.`);
    await loadRacks(g.name);
  } catch (err) { flash(problemText(err), true); }
}

// ---- errors beside the fields they are about ----

function clearFieldErrors(form) {
  for (const el of $$(".field-error", form)) el.textContent = "";
  for (const el of $$("[aria-invalid]", form)) el.removeAttribute("aria-invalid");
  const errors = $(".errors", form);
  if (errors) errors.textContent = "";
}

// showFieldErrors shows a problem's field errors beside their fields (an
// element with data-field, in the field's wrapper), marking the fields
// invalid, and the rest in the form's .errors. body is what was sent:
// an error about one item of a list ("roster[1]") names the item.
function showFieldErrors(form, err, body = {}) {
  const fields = (err.problem && err.problem.errors) || [];
  const left = [];
  let first = null;
  for (const fe of fields) {
    const m = /^(.*)\[(\d+)\]$/.exec(fe.field || "");
    const name = m ? m[1] : fe.field;
    const slot = $$("[data-field]", form).find((el) => el.dataset.field === name);
    if (!slot) { left.push(`${fe.field}: ${fe.message}`); continue; }
    let item = "";
    if (m) {
      const value = name.split(".").reduce((o, k) => (o ? o[k] : undefined), body);
      const v = value ? value[Number(m[2])] : undefined;
      // The server's message may name the item itself.
      item = v === undefined ? `item ${Number(m[2]) + 1}: ` : fe.message.includes(String(v)) ? "" : `${v}: `;
    }
    slot.append(h("span", { class: "line" }, item + fe.message));
    const input = $("input, select, textarea", slot.closest(".field"));
    if (input) {
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
  }
  const errors = $(".errors", form);
  errors.textContent = fields.length
    ? `Not saved: ${fields.length === 1 ? "the field marked above needs" : "the fields marked above need"} fixing.${left.length ? ` ${left.join("; ")}` : ""}`
    : problemText(err);
  if (first) first.focus();
  else errors.scrollIntoView({ block: "nearest" });
}

// ---- users ----

// fromDirectory is whether a user signs in with the company directory,
// which owns their names, email, role and password.
const fromDirectory = (u) => u.source === "ldap";

function sourceCell(u) {
  return fromDirectory(u) ? h("span", { class: "badge enrolled", title: u.directory.dn }, "directory") : "local";
}

async function loadDirectoryStatus() {
  const d = await api("GET", "/v1/directory");
  const el = $("#directory-status");
  el.hidden = !d.configured;
  if (!d.configured) return;
  const up = d.up === false ? " The directory did not answer the last time it was asked." : "";
  const s = d.lastSync;
  el.textContent = s
    ? `Company directory: last sync ${new Date(s.at).toLocaleString()} (${s.outcome}): ${s.checked} checked, ${s.updated} updated, ${s.disabled} disabled, ${s.enabled} enabled again.${up}`
    : `Company directory: no sync has run yet.${up}`;
}

async function loadUsers() {
  await Promise.all([loadLockouts(), loadDirectoryStatus()]);
  const page = await api("GET", "/v1/users?limit=1000");
  $("#users-table tbody").replaceChildren(...page.items.map((u) => h("tr", {},
    h("td", { class: "mono" }, userLink(u.id, u.username)),
    h("td", {}, [u.firstName, u.lastName].filter(Boolean).join(" ") || "—"),
    h("td", {}, u.role),
    h("td", {}, scopeText(u)),
    h("td", {}, sourceCell(u)),
    h("td", {}, u.disabled ? h("span", { class: "badge retired" }, "disabled") : h("span", { class: "badge enrolled" }, "active")),
    h("td", { class: "factors" }, factorCell(u)),
    h("td", { class: "row-actions" },
      h("button", { type: "button", class: "quiet", onclick: () => setDisabled(u, !u.disabled) }, u.disabled ? "Enable" : "Disable"),
      fromDirectory(u) ? null : h("button", { type: "button", class: "quiet", onclick: () => resetPassword(u) }, "Reset password"),
      h("button", { type: "button", class: "quiet", onclick: () => logoutAll(u) }, "Log out everywhere"),
      resetFactorsButton(u, loadUsers)))));
}

// scopeText says which handset groups a user is limited to: a manager's
// are what they manage (none, the whole fleet); a worker's, the groups
// they belong to; an admin is never limited.
function scopeText(u) {
  const groups = u.scopes || [];
  if (u.role === "admin") return h("span", { class: "muted" }, "whole fleet");
  if (!groups.length) return h("span", { class: "muted" }, u.role === "manager" ? "whole fleet" : "—");
  return groups.join(", ");
}

// editScopes changes a user's groups. A manager limited to groups changes
// only those among their own; the server says what it refuses.
function editScopes(u, reload) {
  const dlg = openDialog("#scopes-dialog");
  $("#scopes-title").textContent = `Groups of ${u.username}`;
  $("#scopes-form input[name=scopes]").value = (u.scopes || []).join(", ");
  $("#scopes-form").onsubmit = (e) => submitDialog(e, dlg, async (f) => {
    await api("PATCH", `/v1/users/${encodeURIComponent(u.id)}`, { scopes: list(f.get("scopes")) });
    flash(`The groups of ${u.username} are saved.`);
    await reload();
  });
}

// factorCell shows the kinds of second factor a manager or admin has;
// workers take none (their handset is theirs).
function factorCell(u) {
  if (!u.mfa) return h("span", { class: "muted" }, "—");
  if (!u.mfa.factors.length) return h("span", { class: "badge none" }, "none");
  return [...new Set(u.mfa.factors)].map((k) => h("span", { class: "badge factor", "data-kind": k }, kindShort[k] || k));
}

// resetFactorsButton is an admin's "Reset second factor" for another
// account that has one, or null.
function resetFactorsButton(u, reload) {
  if (state.user.role !== "admin" || u.id === state.user.id || !u.mfa || !u.mfa.factors.length) return null;
  return h("button", { type: "button", class: "danger", "data-reset-mfa": u.username, onclick: () => resetFactors(u, reload) }, "Reset second factor");
}

async function resetFactors(u, reload) {
  const text = `Reset the second factors of ${u.username}? Their authenticator apps, passkeys and recovery codes stop working, and every session of theirs ends at once. ` +
    "If their role must have a second factor, they set up a new one at their next sign-in.";
  if ((await confirmAction(text, false)) === null) return;
  try {
    const r = await api("POST", `/v1/users/${encodeURIComponent(u.id)}/mfa/reset`);
    await reload();
    flash(`Second factors of ${u.username} reset; ${r.revoked} session(s) ended.`);
  } catch (err) { flash(problemText(err), true); }
}

// loadUser shows a user: their account, the handsets assigned to them
// and where they are logged in.
async function loadUser(id) {
  const [u, devices, sessions] = await Promise.all([
    api("GET", `/v1/users/${encodeURIComponent(id)}`),
    api("GET", `/v1/devices?assignedUser=${encodeURIComponent(id)}&limit=1000`),
    api("GET", `/v1/sessions?userId=${encodeURIComponent(id)}&limit=1000`),
  ]);
  const reload = () => loadUser(u.id);
  $("#user-title").textContent = `User ${u.username}`;
  $("#user-details").replaceChildren(...[
    ["Username", u.username], ["Name", [u.firstName, u.lastName].filter(Boolean).join(" ") || "—"], ["Email", u.email || "—"],
    ["Role", u.role], ["Groups", scopeText(u)], ["State", u.disabled ? h("span", { class: "badge retired" }, "disabled") : h("span", { class: "badge enrolled" }, "active")],
    ...(u.mfa ? [["Second factor", h("span", { class: "factors" }, factorCell(u))], ["Recovery codes left", String(u.mfa.recoveryCodes)]] : []),
    ["Source", fromDirectory(u)
      ? h("span", {}, sourceCell(u), " ", h("span", { class: "muted" }, "names, email, role and password are managed in the company directory"))
      : "local"],
    ...(fromDirectory(u) ? [["Directory entry", h("span", { class: "mono" }, u.directory.dn)], ["Last read", when(u.directory.syncedAt)]] : []),
    ...(fromDirectory(u) && u.directory.disabledFor ? [["Disabled by the directory", u.directory.disabledFor]] : []),
    ["Created", when(u.createdAt)],
  ].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  $("#user-actions").replaceChildren(...[
    h("button", { type: "button", class: "quiet", onclick: () => setDisabled(u, !u.disabled, reload) }, u.disabled ? "Enable" : "Disable"),
    fromDirectory(u) ? null : h("button", { type: "button", class: "quiet", onclick: () => resetPassword(u) }, "Reset password"),
    h("button", { type: "button", class: "quiet", onclick: () => logoutAll(u, reload) }, "Log out everywhere"),
    u.role === "admin" ? null : h("button", { type: "button", class: "quiet", onclick: () => editScopes(u, reload) }, "Edit groups"),
    resetFactorsButton(u, reload),
  ].filter(Boolean));
  $("#user-devices tbody").replaceChildren(...devices.items.map((d) => h("tr", {},
    h("td", {}, h("a", { href: `#device/${encodeURIComponent(d.id)}`, class: "mono" }, d.imei)),
    h("td", {}, d.label || "—"), h("td", {}, d.group || "—"), h("td", {}, badge(d.status)), h("td", {}, at(d.lastSeenAt)),
    h("td", {}, d.assignedUsers.join(", ")))));
  if (!devices.items.length) $("#user-devices tbody").append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No handset is assigned to this user.")));
  $("#user-sessions tbody").replaceChildren(...sessions.items.map((s) => h("tr", {},
    h("td", {}, s.deviceId ? handsetCell(s.deviceId, s.deviceImei, s.deviceLabel) : s.deviceName ? `device named ${s.deviceName}` : "no handset (console or API)"),
    h("td", {}, at(s.createdAt)), h("td", {}, at(s.lastUsedAt)), h("td", {}, s.clientIp || "—"),
    h("td", {}, h("button", { type: "button", class: "quiet", onclick: () => endSession(s.id, reload) }, "End")))));
  if (!sessions.items.length) $("#user-sessions tbody").append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Not logged in anywhere.")));
}

async function loadLockouts() {
  const page = await api("GET", "/v1/lockouts?limit=1000");
  $("#lockouts-empty").hidden = page.items.length > 0;
  $("#lockouts-table tbody").replaceChildren(...page.items.map((l) => h("tr", {},
    h("td", { class: "mono" }, l.account || "any account"),
    h("td", { class: "mono" }, l.address || "any address"),
    h("td", {}, String(l.failures)),
    h("td", {}, l.blockedUntil ? h("span", { class: "badge suspended" }, new Date(l.blockedUntil).toLocaleString()) : "—"),
    h("td", { class: "row-actions" },
      h("button", { type: "button", class: "quiet", onclick: () => clearLockout(l) }, "Clear")))));
}

async function clearLockout(l) {
  const q = new URLSearchParams();
  if (l.account) q.set("account", l.account);
  if (l.address) q.set("address", l.address);
  const what = l.account ? `the failed sign-ins of ${l.account}${l.address ? ` from ${l.address}` : " (from every address)"}` : `the failed sign-ins from ${l.address}`;
  if ((await confirmAction(`Forget ${what}?`, false)) === null) return;
  try { await api("DELETE", `/v1/lockouts?${q}`); await loadLockouts(); flash(`Forgot ${what}.`); }
  catch (err) { flash(problemText(err), true); }
}

// setDisabled disables or enables a user, then shows the page again with
// reload (the users list by default).
async function setDisabled(u, disabled, reload = loadUsers) {
  if (disabled && (await confirmAction(`Disable ${u.username}? Every session of theirs ends at once.`, false)) === null) return;
  try { await api("PATCH", `/v1/users/${encodeURIComponent(u.id)}`, { disabled }); await reload(); flash(`${u.username} ${disabled ? "disabled" : "enabled"}.`); }
  catch (err) { flash(problemText(err), true); }
}

function resetPassword(u) {
  const dlg = openDialog("#password-dialog");
  $("#password-title").textContent = `Reset the password of ${u.username}`;
  $("#password-form").onsubmit = (e) => submitDialog(e, dlg, async (f) => {
    await api("POST", `/v1/users/${encodeURIComponent(u.id)}/password`, { password: f.get("password") });
    flash(`Password of ${u.username} set; every session of theirs has ended.`);
  });
}

async function logoutAll(u, reload) {
  if ((await confirmAction(`Log ${u.username} out everywhere?`, false)) === null) return;
  try {
    const r = await api("POST", `/v1/users/${encodeURIComponent(u.id)}/logout-all`);
    if (reload) await reload();
    flash(`${r.revoked} session(s) of ${u.username} ended.`);
  } catch (err) { flash(problemText(err), true); }
}

// ---- enrollment codes ----

async function loadCodes() {
  const codes = await api("GET", "/v1/enrollment-codes");
  $("#codes-table tbody").replaceChildren(...codes.items.slice().reverse().map((c) => h("tr", {},
    h("td", {}, c.label || "—"), h("td", {}, c.group || "—"), h("td", {}, `${c.uses} / ${c.maxUses}`), h("td", {}, when(c.expiresAt)),
    h("td", {}, c.usable ? h("span", { class: "badge enrolled" }, "usable") : h("span", { class: "badge retired" }, c.revokedAt ? "revoked" : "spent")),
    h("td", {}, c.usable ? h("button", { type: "button", class: "quiet", onclick: () => revokeCode(c) }, "Revoke") : ""))));
}

async function createCode(event) {
  event.preventDefault();
  const f = new FormData(event.target);
  try {
    const c = await api("POST", "/v1/enrollment-codes", {
      expiresIn: f.get("expiresIn"), maxUses: Number(f.get("maxUses")), label: f.get("label"), group: f.get("group"),
    });
    $("#code-value").textContent = c.code;
    $("#code-url").textContent = c.enrollUrl;
    // The code is made, but a handset may not manage to use it: say why,
    // naming the server setting that changes it.
    const warnings = c.warnings || [];
    $("#code-warnings").replaceChildren(...warnings.map((w) => h("li", { "data-code": w.code, "data-setting": w.setting || "" },
      ...(w.setting ? w.message.split(w.setting).flatMap((part, i) => (i ? [h("code", {}, w.setting), part] : [part])) : [w.message]))));
    $("#code-warnings").hidden = !warnings.length;
    const png = await api("GET", c.qrPath, undefined, { accept: "*/*", raw: true });
    const img = $("#code-qr");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await png.blob());
    $("#code-result").hidden = false;
    await loadCodes();
  } catch (err) { flash(problemText(err), true); }
}

async function revokeCode(c) {
  if ((await confirmAction(`Revoke the code for "${c.label || c.id}"? No more handsets can enroll with it.`, false)) === null) return;
  try { await api("DELETE", `/v1/enrollment-codes/${encodeURIComponent(c.id)}`); await loadCodes(); }
  catch (err) { flash(problemText(err), true); }
}

// ---- audit ----

// loadAudit shows the newest events first; more appends the page before
// them, going back in time.
async function loadAudit(more) {
  const f = new FormData($("#audit-filter"));
  const q = new URLSearchParams({ limit: "100", order: "desc" });
  if (f.get("action")) q.set("action", f.get("action"));
  for (const k of ["from", "to"]) if (f.get(k)) q.set(k, new Date(f.get(k)).toISOString().replace(/\.\d+Z$/, "Z"));
  if (more && state.auditCursor) q.set("cursor", state.auditCursor);
  const page = await api("GET", `/v1/audit?${q}`);
  const rows = page.items.map((e) => h("tr", {},
    h("td", {}, at(e.time)), h("td", {}, e.action), h("td", {}, e.outcome), h("td", {}, e.reason || "—"),
    h("td", {}, actorText(e.actor, e.actorName)), h("td", {}, e.userId ? userLink(e.userId, e.username) : e.username || "—"),
    h("td", {}, handsetCell(e.deviceId, e.deviceImei, e.deviceLabel)), h("td", { class: "mono" }, e.clientIp || "—")));
  const body = $("#audit-table tbody");
  if (more) body.append(...rows); else body.replaceChildren(...rows);
  state.auditCursor = page.nextCursor || "";
  $("#audit-more").disabled = !page.nextCursor;
}

// ---- the sinks the audit trail is pushed to ----

// sinkHealth is what a sink's state says, worst first: the word shown and
// whether it wants a manager's attention.
function sinkHealth(s) {
  const waited = s.oldest ? (Date.now() - new Date(s.oldest).getTime()) / 1000 : 0;
  if (s.overLimit) return { text: "backlog over its limit", bad: true };
  if (waited > 300) return { text: "falling behind", bad: true };
  if (s.deadLetters > 0) return { text: "dead letters", bad: true };
  if (s.lastError && (!s.lastDelivery || new Date(s.lastErrorAt) > new Date(s.lastDelivery))) return { text: "retrying", bad: false };
  return { text: "healthy", bad: false };
}

// loadSinks shows the sinks, for unscoped managers and admins: the panel
// stays hidden when there are none, or for a manager limited to some
// groups (the server answers 404: the sinks carry every group's events).
async function loadSinks() {
  let sinks = [];
  try { sinks = (await api("GET", "/v1/events/sinks")).sinks; } catch (err) {
    if (err.status !== 404 && err.status !== 403) throw err;
  }
  $("#sinks-panel").hidden = sinks.length === 0;
  const rows = sinks.map((s) => {
    const health = sinkHealth(s);
    const dead = h("button", { type: "button", class: "quiet", "data-sink": s.name }, "Dead letters");
    dead.disabled = s.deadLetters === 0;
    dead.addEventListener("click", () => openDeadLetters(s.name));
    return h("tr", { "data-sink": s.name },
      h("td", {}, h("strong", {}, s.name), h("div", { class: "muted small" }, s.type)),
      h("td", { class: "mono small" }, s.target),
      h("td", {}, h("span", { class: `badge ${health.bad ? "suspended" : "enrolled"}` }, health.text)),
      h("td", {}, String(s.pending)), h("td", {}, at(s.oldest)), h("td", {}, String(s.deadLetters)),
      h("td", {}, at(s.lastDelivery)), h("td", { class: "small" }, s.lastError || "—"),
      h("td", { class: "row-actions" }, dead));
  });
  $("#sinks-table tbody").replaceChildren(...rows);
  const trouble = sinks.filter((s) => sinkHealth(s).bad);
  const alert = $("#sinks-alert");
  alert.hidden = trouble.length === 0;
  alert.textContent = trouble.map((s) => `${s.name}: ${sinkHealth(s).text}` +
    (s.overLimit ? ` (${s.backlogLimit} events); its oldest were made dead letters` : "")).join(". ");
  const nav = $("[data-nav=audit]");
  if (trouble.length) nav.dataset.alert = "true"; else delete nav.dataset.alert;
}

// openDeadLetters lists a sink's dead letters in a dialog, each with a
// replay button, and all of them with one.
async function openDeadLetters(sink, cursor = "") {
  const dlg = $("#dead-dialog");
  const errors = $(".errors", dlg);
  if (!cursor) {
    errors.textContent = "";
    $("#dead-title").textContent = `Dead letters of ${sink}`;
    $("#dead-table tbody").replaceChildren();
    if (!dlg.open) dlg.showModal();
  }
  const replay = async (body, what) => {
    try {
      const r = await api("POST", `/v1/events/sinks/${encodeURIComponent(sink)}/replay`, body);
      flash(`${r.replayed} ${what} of ${sink} replayed.`);
      dlg.close();
      await loadSinks();
    } catch (err) { errors.textContent = problemText(err); }
  };
  try {
    const q = new URLSearchParams({ limit: "100" });
    if (cursor) q.set("cursor", cursor);
    const page = await api("GET", `/v1/events/sinks/${encodeURIComponent(sink)}/dead-letters?${q}`);
    const rows = page.items.map((d) => {
      const b = h("button", { type: "button", class: "quiet" }, "Replay");
      b.addEventListener("click", () => replay({ seqs: [d.seq] }, "dead letter"));
      return h("tr", {}, h("td", {}, at(d.event.time)), h("td", {}, d.event.action), h("td", {}, d.event.outcome),
        h("td", {}, at(d.failed)), h("td", { class: "small" }, d.reason), h("td", { class: "row-actions" }, b));
    });
    $("#dead-table tbody").append(...rows);
    const more = $("#dead-more");
    more.hidden = !page.nextCursor;
    more.onclick = () => openDeadLetters(sink, page.nextCursor);
    $("#dead-replay-all").onclick = () => replay(undefined, "dead letters");
  } catch (err) { errors.textContent = problemText(err); }
}

// ---- OAuth clients (admins) ----

const grantNames = { "urn:ietf:params:oauth:grant-type:device_code": "device_code" };
const needsSecret = (c) => c.token_endpoint_auth_method === "client_secret_basic" || c.token_endpoint_auth_method === "client_secret_post";
const clientName = (c) => c.client_name || c.client_id;
const lines = (s) => (s || "").split("\n").map((x) => x.trim()).filter(Boolean);

// withSetting writes a server message with the setting it names as code.
const withSetting = (message, setting) => message.split(setting).flatMap((part, i) => (i ? [h("code", {}, setting), part] : [part]));

// loadClients lists the clients; on a server without OAuth (no
// --public-url), it says so instead.
async function loadClients() {
  let page;
  try {
    page = await api("GET", "/v1/oauth/clients");
  } catch (err) {
    if (err.status !== 404 || err.problem.code !== "not_found") throw err;
    $("#clients-off").replaceChildren(...withSetting(`Off on this server: ${err.message}.`, "--public-url"));
    for (const [sel, off] of [["#clients-off", false], ["#clients-about", true], ["#clients-wrap", true], ["#client-open", true]]) $(sel).hidden = off;
    return;
  }
  // Apps are set up from the issuer URL: it is --public-url, which may
  // not be the address the console was opened at.
  const issuer = await api("GET", "/.well-known/openid-configuration").then((m) => m.issuer, () => "");
  for (const [sel, off] of [["#clients-off", true], ["#clients-about", !issuer], ["#clients-wrap", false], ["#client-open", false]]) $(sel).hidden = off;
  $("#clients-issuer").textContent = issuer;
  const body = $("#clients-table tbody");
  body.replaceChildren(...page.items.map((c) => h("tr", { "data-client": c.client_id },
    h("td", {}, clientName(c)),
    h("td", { class: "mono nowrap" }, c.client_id),
    h("td", {}, c.token_endpoint_auth_method === "none" ? "public" : "confidential",
      h("div", { class: "muted small" }, c.token_endpoint_auth_method),
      c.dpop_bound_access_tokens ? h("div", { class: "muted small" }, "DPoP-bound") : null),
    h("td", { class: "nowrap" }, (c.grant_types || []).map((g) => h("div", {}, grantNames[g] || g))),
    h("td", { class: "uris" }, (c.redirect_uris || []).length ? c.redirect_uris.map((u) => h("div", { class: "mono" }, u)) : "—"),
    h("td", { class: "row-actions" },
      needsSecret(c) ? h("button", { type: "button", class: "quiet", onclick: () => rotateSecret(c) }, "Rotate secret") : null,
      h("button", { type: "button", class: "quiet", onclick: () => deleteClient(c) }, "Delete")))));
  if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No client is registered yet.")));
}

// showSecret shows a client's secret, the one time the server tells it.
function showSecret(c) {
  $("#client-secret-title").textContent = `Client secret of “${clientName(c)}”`;
  $("#client-secret-value").value = c.client_secret;
  $("#client-secret-hint").textContent = "";
  $("#client-secret").hidden = false;
  $("#client-secret-value").focus();
  $("#client-secret-value").select();
}

// hideSecret forgets the secret shown: it leaves the page.
function hideSecret() {
  $("#client-secret-value").value = "";
  $("#client-secret").hidden = true;
}

async function copySecret() {
  const input = $("#client-secret-value");
  input.focus();
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    $("#client-secret-hint").textContent = "Copied to the clipboard.";
  } catch {
    $("#client-secret-hint").textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy it.";
  }
}

function newClient() {
  hideSecret();
  const dlg = openDialog("#client-dialog");
  $("#client-form").onsubmit = (e) => submitDialog(e, dlg, async (f) => {
    const auth = f.get("auth");
    const grants = f.getAll("grant");
    const scopes = f.getAll("scope");
    if (!grants.length) throw new APIError(400, { detail: "Choose at least one grant." });
    if (!scopes.length) throw new APIError(400, { detail: "Choose at least one scope." });
    const c = await api("POST", "/v1/oauth/clients", {
      client_name: f.get("name").trim(),
      token_endpoint_auth_method: auth,
      application_type: auth === "none" ? "native" : undefined,
      redirect_uris: lines(f.get("redirectUris")),
      grant_types: grants,
      scope: scopes.join(" "),
      id_token_signed_response_alg: f.get("alg"),
      dpop_bound_access_tokens: f.get("dpop") === "on",
    });
    await loadClients();
    flash(`Client “${clientName(c)}” created: its client_id is ${c.client_id}.`);
    if (c.client_secret) showSecret(c);
  });
}

async function rotateSecret(c) {
  if ((await confirmAction(`Rotate the secret of “${clientName(c)}”? The old secret stops working at once: the app needs the new one.`, false)) === null) return;
  try {
    const r = await api("POST", `/v1/oauth/clients/${encodeURIComponent(c.client_id)}/secret`);
    flash(`New secret for “${clientName(c)}”; the old one no longer works.`);
    showSecret(r);
  } catch (err) { flash(problemText(err), true); }
}

async function deleteClient(c) {
  if ((await confirmAction(`Delete the client “${clientName(c)}”? It can no longer sign anyone in; its refresh tokens stop working at once.`, false)) === null) return;
  try {
    await api("DELETE", `/v1/oauth/clients/${encodeURIComponent(c.client_id)}`);
    hideSecret();
    await loadClients();
    flash(`Client “${clientName(c)}” deleted.`);
  } catch (err) { flash(problemText(err), true); }
}

// ---- signing in, and its second step ----

// step is the second step of the sign-in under way: the token that
// continues it, and the methods the account can use.
let step = null;

const loginSteps = { password: "#login-form", mfa: "#mfa-form", enroll: "#enroll-step", codes: "#login-codes" };
const loginTitles = { password: "Sign in", mfa: "Second factor", enroll: "Set up a second factor", codes: "Your recovery codes" };

// loginStep shows one step of signing in; back at the password, the step
// under way and anything it showed are forgotten.
function loginStep(name) {
  for (const [k, sel] of Object.entries(loginSteps)) $(sel).hidden = k !== name;
  $("#login-intro").hidden = name !== "password";
  $("#login-title").textContent = loginTitles[name];
  if (name === "password") {
    step = null;
    $("#passkey-step").hidden = true;
    $("#enroll-passkey-row").hidden = true;
    setQR("#enroll-qr", "");
    $("#enroll-secret").value = "";
    $("#mfa-form").reset();
    $("#enroll-form").reset();
    $("#login-codes").replaceChildren();
  }
  const first = $(`${loginSteps[name]} input:not([readonly]), ${loginSteps[name]} button`);
  if (first) first.focus();
}

// setQR shows a PNG (base64, as the server sends it) in the image sel, as
// a blob URL (the page's CSP allows no data: URL); "" empties it.
function setQR(sel, png) {
  const img = $(sel);
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.removeAttribute("src");
  if (!png) return;
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  img.src = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
}

async function signInPassword(e) {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    await signedIn(await api("POST", "/v1/auth/login", { username: f.get("username"), password: f.get("password"), persistent: false }));
  } catch (err) {
    state.access = "";
    const p = err.problem || {};
    try {
      if (p.code === "mfa_required") {
        step = { token: p.mfaToken, methods: p.methods || [] };
        e.target.reset();
        flash("");
        const passkey = step.methods.includes("webauthn") && passkeysHere();
        $("#passkey-step").hidden = !passkey;
        $("#mfa-text").textContent = step.methods.includes("totp")
          ? "Enter the code your authenticator app shows, or one of your recovery codes."
          : "Enter one of your recovery codes.";
        loginStep("mfa");
        if (passkey) $("#passkey-use").focus();
        return;
      }
      if (p.code === "mfa_enrollment_required") {
        step = { token: p.enrollmentToken, methods: p.methods || [] };
        await enrollmentApp();
        $("#enroll-passkey-row").hidden = !(step.methods.includes("webauthn") && passkeysHere());
        e.target.reset();
        flash("");
        loginStep("enroll");
        return;
      }
      flash(problemText(err), true);
    } catch (err2) { flash(problemText(err2), true); }
  }
}

// signInCode ends a sign-in with a code of the account's authenticator
// app or a recovery code.
async function signInCode(e) {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    await signedIn(await api("POST", "/v1/auth/mfa", { mfaToken: step.token, code: f.get("code").trim() }));
  } catch (err) {
    state.access = "";
    e.target.reset();
    flash(problemText(err), true);
  }
}

// signInEnrolled confirms the authenticator app set up at sign-in with its
// first code; the recovery codes that come with it show once, then the
// console opens.
async function signInEnrolled(e) {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    const tokens = await api("POST", "/v1/auth/mfa/enroll/confirm", { enrollmentToken: step.token, code: f.get("code").trim() });
    keep(tokens);
    flash("Your authenticator app is set up.");
    $("#login-codes").replaceChildren(codesCard(tokens.recoveryCodes, "Continue", () => { $("#login-codes").replaceChildren(); enter(); }));
    loginStep("codes");
  } catch (err) {
    state.access = "";
    e.target.reset();
    flash(problemText(err), true);
  }
}

// enrollmentApp shows the key of the authenticator app being set up at
// sign-in (the same one, asked again).
async function enrollmentApp() {
  const setup = await api("POST", "/v1/auth/mfa/enroll", { enrollmentToken: step.token });
  $("#enroll-secret").value = setup.secret;
  setQR("#enroll-qr", setup.qrPng);
}

// enrollPasskey sets up a passkey at sign-in, in place of the app; the
// recovery codes that come with it show once, then the console opens.
async function enrollPasskey() {
  try {
    const setup = await api("POST", "/v1/auth/mfa/enroll/webauthn", { enrollmentToken: step.token });
    let cred;
    try {
      cred = await navigator.credentials.create({ publicKey: creationOptions(setup.options.publicKey) });
    } catch (err) {
      // The app's setup gave way to the passkey's: show it again, new.
      await enrollmentApp().catch(() => {});
      throw new APIError(0, { detail: passkeyProblem(err) });
    }
    const tokens = await api("POST", "/v1/auth/mfa/enroll/webauthn/confirm", { enrollmentToken: step.token, credential: credentialJSON(cred) });
    keep(tokens);
    flash("Your passkey is set up.");
    $("#login-codes").replaceChildren(codesCard(tokens.recoveryCodes, "Continue", () => { $("#login-codes").replaceChildren(); enter(); }));
    loginStep("codes");
  } catch (err) {
    state.access = "";
    flash(passkeyProblem(err), true);
  }
}

// signInPasskey ends a sign-in with a passkey: the browser signs the
// server's challenge for this sign-in step.
async function signInPasskey() {
  try {
    const o = await api("POST", "/v1/auth/mfa/webauthn", { mfaToken: step.token });
    const cred = await navigator.credentials.get({ publicKey: requestOptions(o.publicKey) });
    await signedIn(await api("POST", "/v1/auth/mfa/webauthn/finish", { mfaToken: step.token, credential: credentialJSON(cred) }));
  } catch (err) {
    state.access = "";
    flash(passkeyProblem(err), true);
  }
}

// signedIn keeps the tokens of a sign-in and opens the console.
async function signedIn(tokens) {
  keep(tokens);
  if (state.user.role === "worker") {
    await api("POST", "/v1/auth/logout");
    throw new APIError(403, { detail: "The console is for managers and admins." });
  }
  await enter();
}

// enter opens the console for the person signed in.
async function enter() {
  flash("");
  loginStep("password");
  $("#login-form").reset();
  $("#top").hidden = false;
  $("#who").textContent = `${state.user.username} (${state.user.role})`;
  // A manager limited to some groups sees which: everything shown is theirs.
  const scope = state.user.role === "manager" && (state.user.scopes || []).length ? state.user.scopes.join(", ") : "";
  $("#scope").textContent = scope ? `groups: ${scope}` : "";
  $("#scope").hidden = !scope;
  showRoleItems();
  if (!location.hash || location.hash === "#login") location.hash = "#fleet"; else await route();
}

// ---- passkeys (WebAuthn) ----

// passkeysHere reports whether this browser can use passkeys here (a
// secure context: https, or localhost).
const passkeysHere = () => window.isSecureContext && "PublicKeyCredential" in window && !!navigator.credentials;

function b64u(buf) {
  let s = "";
  for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function unb64u(s) {
  const t = s.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(t + "=".repeat((4 - (t.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

// creationOptions and requestOptions turn the server's WebAuthn options
// (JSON, binary members in base64url) into what the browser takes.
function creationOptions(o) {
  return {
    ...o,
    challenge: unb64u(o.challenge),
    user: { ...o.user, id: unb64u(o.user.id) },
    excludeCredentials: (o.excludeCredentials || []).map((c) => ({ ...c, id: unb64u(c.id) })),
  };
}

function requestOptions(o) {
  return { ...o, challenge: unb64u(o.challenge), allowCredentials: (o.allowCredentials || []).map((c) => ({ ...c, id: unb64u(c.id) })) };
}

// credentialJSON is a PublicKeyCredential as the server takes it.
function credentialJSON(c) {
  const r = c.response;
  const out = { id: c.id, rawId: b64u(c.rawId), type: c.type, clientExtensionResults: c.getClientExtensionResults(), response: { clientDataJSON: b64u(r.clientDataJSON) } };
  if (c.authenticatorAttachment) out.authenticatorAttachment = c.authenticatorAttachment;
  if (r.attestationObject) {
    out.response.attestationObject = b64u(r.attestationObject);
    out.response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    out.response.authenticatorData = b64u(r.authenticatorData);
    out.response.signature = b64u(r.signature);
    if (r.userHandle) out.response.userHandle = b64u(r.userHandle);
  }
  return out;
}

// passkeyProblem says why a passkey was not used: the browser's refusal
// (cancelled, timed out, not registered here) or the server's.
function passkeyProblem(err) {
  if (err instanceof APIError) return problemText(err);
  if (err && err.name === "NotAllowedError") return "The passkey was not used: it was cancelled, timed out, or is not one of this account's.";
  if (err && err.name === "InvalidStateError") return "This passkey is registered already.";
  return `The browser could not use a passkey: ${(err && err.message) || err}`;
}

function addPasskey() {
  forgetSecurity();
  reauth("Add a passkey: this device's fingerprint, face or screen lock, a phone, or a security key.", async (proof, f) => {
    const setup = await api("POST", "/v1/auth/factors/webauthn", { ...proof, name: (f.get("name") || "").trim() });
    let cred;
    try {
      cred = await navigator.credentials.create({ publicKey: creationOptions(setup.options.publicKey) });
    } catch (err) {
      throw new APIError(0, { detail: passkeyProblem(err) });
    }
    const r = await api("POST", "/v1/auth/factors/webauthn/confirm", { credential: credentialJSON(cred) });
    await loadSecurity();
    flash("Passkey added.");
    if (r.recoveryCodes) showOwnCodes(r.recoveryCodes);
  }, true);
}

// ---- recovery codes ----

// codesCard shows recovery codes, the one time the server tells them,
// with a download as a text file and a button that moves on.
function codesCard(codes, doneLabel, done) {
  const name = `tether-recovery-codes-${state.user.username}.txt`;
  const text = [
    `Tether recovery codes for ${state.user.username} (${location.origin}/console)`,
    `Made ${new Date().toISOString()}. Each code signs you in once, in place of a code from your authenticator app or a passkey.`,
    "",
    ...codes,
    "",
  ].join("\n");
  return h("div", { class: "card secret", "data-codes": "" },
    h("h2", {}, "Recovery codes"),
    h("p", {}, "If you lose your authenticator app or passkey, each of these codes signs you in once. Keep them somewhere safe, apart from your phone: they are shown only this once."),
    h("ol", { class: "codes mono" }, codes.map((c) => h("li", {}, c))),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "quiet", "data-download": "", onclick: () => download(name, text) }, "Download as a text file"),
      h("button", { type: "button", "data-done": "", onclick: done }, doneLabel)));
}

// download saves text as a file named name.
function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---- security: one's own second factors ----

const kindNames = { totp: "Authenticator app", webauthn: "Passkey" };
const kindShort = { totp: "app", webauthn: "passkey" };

async function loadSecurity() {
  const st = await api("GET", "/v1/auth/factors");
  state.factors = st.factors;
  $("#security-policy").textContent = st.required
    ? "Your role must have a second factor: every sign-in asks for it. You can add and replace factors, but not remove your last one."
    : "A second factor is optional for your role. Once you have one, every sign-in asks for it.";
  const body = $("#factors-table tbody");
  body.replaceChildren(...st.factors.map((f) => h("tr", { "data-factor": f.id, "data-kind": f.kind },
    h("td", {}, kindNames[f.kind] || f.kind, f.name ? h("div", { class: "muted small" }, f.name) : null),
    h("td", {}, at(f.createdAt)),
    h("td", {}, at(f.lastUsedAt)),
    h("td", { class: "row-actions" }, h("button", { type: "button", class: "quiet", onclick: () => removeFactor(f) }, "Remove")))));
  if (!st.factors.length) body.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No second factor yet: your password alone signs you in.")));
  $("#totp-open").textContent = st.factors.some((f) => f.kind === "totp") ? "Replace the authenticator app" : "Set up an authenticator app";
  const n = st.recoveryCodes;
  $("#recovery-left").textContent = !st.factors.length
    ? "Recovery codes come with your first second factor."
    : `${n} unused recovery ${n === 1 ? "code" : "codes"} left${st.recoveryCodesAt ? `, made ${when(st.recoveryCodesAt)}` : ""}.${n < 3 ? " Make new ones before you run out." : ""}`;
  $("#recovery-open").hidden = !st.factors.length;
  // A passkey answers the page's origin: elsewhere the server refuses it.
  const here = st.passkeys && passkeysHere() && st.passkeyOrigins.includes(location.origin);
  $("#passkey-open").hidden = !here;
  $("#passkeys-off").hidden = here;
  $("#passkeys-off").textContent = !st.passkeys
    ? "Passkeys are off on this server: they need its public address (--public-url)."
    : `Passkeys work on the console at ${st.passkeyOrigins.map((o) => `${o}/console`).join(" or ")}${st.passkeyOrigins.some((o) => o.startsWith("http:")) ? "" : " (https)"}.`;
}

// forgetSetup hides a factor being set up, and its secret.
function forgetSetup() {
  $("#security-setup").hidden = true;
  $("#setup-secret").value = "";
  setQR("#setup-qr", "");
  $("#setup-form").reset();
  $("#setup-form .errors").textContent = "";
}

// forgetSecurity hides every secret the Security page showed.
function forgetSecurity() {
  forgetSetup();
  $("#security-codes").replaceChildren();
}

// reauth asks for a fresh proof before a change to one's own factors: a
// code (of a factor or a recovery code) once one has a factor, the
// password before. action gets it as the request's body.
function reauth(text, action, named = false) {
  const dlg = openDialog("#reauth-dialog");
  $("#reauth-name").hidden = !named;
  const withCode = (state.factors || []).length > 0;
  const app = (state.factors || []).some((f) => f.kind === "totp");
  const passkey = withCode && (state.factors || []).some((f) => f.kind === "webauthn") && passkeysHere();
  const how = !withCode ? "Confirm with your password."
    : app ? `Confirm with a code from your authenticator app${passkey ? ", your passkey" : ""}, or a recovery code.`
    : passkey ? "Confirm with your passkey, or one of your recovery codes." : "Confirm with one of your recovery codes.";
  $("#reauth-text").textContent = `${text} ${how}`;
  $("#reauth-passkey-row").hidden = !passkey;
  $("#reauth-passkey").onclick = () => runDialog(dlg, async () => {
    const o = await api("POST", "/v1/auth/factors/webauthn/reauth");
    let cred;
    try {
      cred = await navigator.credentials.get({ publicKey: requestOptions(o.options.publicKey) });
    } catch (err) {
      throw new APIError(0, { detail: passkeyProblem(err) });
    }
    await action({ passkeyToken: o.passkeyToken, credential: credentialJSON(cred) }, new FormData($("#reauth-form")));
  });
  $("#reauth-password").hidden = withCode;
  $("#reauth-code").hidden = !withCode;
  $("#reauth-password input").required = !withCode;
  $("#reauth-code input").required = withCode;
  $(withCode ? "#reauth-code input" : "#reauth-password input").focus();
  $("#reauth-form").onsubmit = (e) => submitDialog(e, dlg, (f) => action(withCode ? { code: f.get("code").trim() } : { password: f.get("password") }, f));
}

function setupTOTP() {
  forgetSecurity();
  const replace = (state.factors || []).some((f) => f.kind === "totp");
  reauth(replace ? "A new authenticator app replaces the one you have once its first code is confirmed." : "Set up an authenticator app as a second factor.", async (proof) => {
    const setup = await api("POST", "/v1/auth/factors/totp", proof);
    $("#security-setup-title").textContent = replace ? "Replace the authenticator app" : "Set up an authenticator app";
    $("#setup-secret").value = setup.secret;
    setQR("#setup-qr", setup.qrPng);
    $("#security-setup").hidden = false;
    $("#setup-form input[name=code]").focus();
  });
}

async function confirmTOTP(e) {
  e.preventDefault();
  const errors = $("#setup-form .errors");
  try {
    const r = await api("POST", "/v1/auth/factors/totp/confirm", { code: new FormData(e.target).get("code").trim() });
    forgetSetup();
    await loadSecurity();
    flash("Your authenticator app is set up.");
    if (r.recoveryCodes) showOwnCodes(r.recoveryCodes);
  } catch (err) {
    errors.textContent = problemText(err);
  }
}

// showOwnCodes shows new recovery codes on the Security page.
function showOwnCodes(codes) {
  $("#security-codes").replaceChildren(codesCard(codes, "Done", () => $("#security-codes").replaceChildren()));
  $("#security-codes [data-download]").focus();
}

function removeFactor(f) {
  forgetSecurity();
  reauth(`Remove the ${(kindNames[f.kind] || f.kind).toLowerCase()} added ${when(f.createdAt)}? Sign-ins no longer accept it.`, async (proof) => {
    await api("POST", `/v1/auth/factors/${encodeURIComponent(f.id)}/remove`, proof);
    await loadSecurity();
    flash(`${kindNames[f.kind] || f.kind} removed.`);
  });
}

function newRecoveryCodes() {
  forgetSecurity();
  reauth("New recovery codes replace the ones you have: the old ones stop working.", async (proof) => {
    const r = await api("POST", "/v1/auth/recovery-codes", proof);
    await loadSecurity();
    showOwnCodes(r.recoveryCodes);
  });
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  for (const sel of $$("select[data-handset-modes]")) sel.append(...handsetModes.map(([value, text]) => h("option", { value }, text)));
  $("#login-form").addEventListener("submit", signInPassword);
  $("#mfa-form").addEventListener("submit", signInCode);
  $("#enroll-form").addEventListener("submit", signInEnrolled);
  for (const b of $$("[data-back]")) b.addEventListener("click", () => { flash(""); loginStep("password"); });
  $("#totp-open").addEventListener("click", setupTOTP);
  $("#setup-form").addEventListener("submit", confirmTOTP);
  $("#setup-cancel").addEventListener("click", () => { forgetSetup(); $("#totp-open").focus(); });
  $("#recovery-open").addEventListener("click", newRecoveryCodes);
  $("#passkey-open").addEventListener("click", addPasskey);
  $("#passkey-use").addEventListener("click", signInPasskey);
  $("#enroll-passkey").addEventListener("click", enrollPasskey);
  $("#logout").addEventListener("click", async () => {
    try { await api("POST", "/v1/auth/logout"); } catch { /* the session may be gone already */ }
    signedOut("Signed out.");
  });
  window.addEventListener("hashchange", route);

  $("#fleet-filter").addEventListener("submit", (e) => { e.preventDefault(); state.page = 0; state.cursors = [""]; loadFleet().catch((err) => flash(problemText(err), true)); });
  $("#fleet-next").addEventListener("click", () => { state.page++; loadFleet().catch((err) => flash(problemText(err), true)); });
  $("#fleet-prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); loadFleet().catch((err) => flash(problemText(err), true)); });

  $("#register-open").addEventListener("click", () => {
    const dlg = openDialog("#register-dialog");
    $("#register-form").onsubmit = (e) => submitDialog(e, dlg, async (f) => {
      const d = await api("POST", "/v1/devices", {
        imei: f.get("imei"), label: f.get("label"), group: f.get("group"), assignedUsers: list(f.get("assignedUsers")), mode: f.get("mode"),
      });
      flash(`Handset ${d.imei} registered.`);
      await loadFleet();
    });
  });
  $("#import-open").addEventListener("click", () => { openDialog("#import-dialog"); resetImport(); });

  $("#rack-group").addEventListener("change", (e) => { location.hash = e.target.value ? `#racks/${encodeURIComponent(e.target.value)}` : "#racks"; });
  $("#rack-filter").addEventListener("submit", (e) => e.preventDefault());
  $("#rack-refresh").addEventListener("click", () => loadRack().catch((err) => flash(problemText(err), true)));
  $("#rack-csv").addEventListener("click", () => exportRack("csv"));
  $("#rack-xlsx").addEventListener("click", () => exportRack("xlsx"));
  $("#group-form").addEventListener("submit", saveGroup);
  $("#group-remove").addEventListener("click", removeGroup);
  $("#group-has-shifts").addEventListener("change", shiftsShown);
  $("#import-form input[type=file]").addEventListener("change", resetImport);
  $("#import-dry").addEventListener("click", () => runImport(true));
  $("#import-commit").addEventListener("click", () => runImport(false));
  $("#import-valid").addEventListener("click", () => runImport(false, true));

  $("#user-open").addEventListener("click", () => {
    const dlg = openDialog("#user-dialog");
    $("#user-form").onsubmit = (e) => submitDialog(e, dlg, async (f) => {
      const body = Object.fromEntries(["username", "password", "role", "firstName", "lastName", "email"].map((k) => [k, f.get(k)]));
      const scopes = list(f.get("scopes"));
      if (scopes.length) body.scopes = scopes;
      const u = await api("POST", "/v1/users", body);
      flash(`User ${u.username} created.`);
      await loadUsers();
    });
  });
  $("#code-form").addEventListener("submit", createCode);
  $("#client-open").addEventListener("click", newClient);
  $("#client-secret-copy").addEventListener("click", copySecret);
  $("#client-secret-done").addEventListener("click", hideSecret);
  $("#audit-filter").addEventListener("submit", (e) => { e.preventDefault(); loadAudit(false).catch((err) => flash(problemText(err), true)); });
  $("#audit-more").addEventListener("click", () => loadAudit(true).catch((err) => flash(problemText(err), true)));

  for (const b of $$("[data-export]")) b.addEventListener("click", () => exportList(b.dataset.export, b.dataset.kind));
  for (const b of $$("[data-close]")) b.addEventListener("click", () => b.closest("dialog").close());
  show("login");
  $("#login-form input[name=username]").focus();
});
