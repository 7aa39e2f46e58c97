// The organizer order page: search, filter, export, and per order mark paid / cancel / resend, each
// after a confirmation; the table reloads after every action.
"use strict";
(function () {
  const { config, $, el, call, errorDetail, showMessage, signedIn, signOut, formatTime, start } = window.TQ;
  const STATUS = Object.fromEntries(config.statuses.map((s) => [s.value, s]));
  const params = new URLSearchParams(location.search);
  const state = {
    status: params.get("status") || "",
    q: params.get("q") || "",
    page: Math.max(1, parseInt(params.get("page") || "1", 10) || 1),
    perPage: parseInt(params.get("per_page") || config.perPage, 10) || config.perPage,
    timeZone: "UTC",
  };

  function batchLabel(batch) {
    if (batch === "confirmation") return "First confirmation";
    const resend = /^resend-(\d+)$/.exec(batch);
    if (resend) return "Resend " + resend[1];
    return batch.charAt(0).toUpperCase() + batch.slice(1).replace(/-/g, " ");
  }

  // One <details> per sending (first confirmation, each resend, the cancellation), oldest first:
  // its time and states at a glance, the emails and a failed one's server reply inside.
  function emailGroups(emails) {
    if (!emails.length) return el("span", { className: "none", textContent: "none yet" });
    const groups = new Map();
    for (const m of emails.slice().reverse()) {
      if (!groups.has(m.batch)) groups.set(m.batch, []);
      groups.get(m.batch).push(m);
    }
    return el("div", { className: "emails" }, [...groups].map(([batch, mails]) => {
      const counts = {};
      for (const m of mails) counts[m.state] = (counts[m.state] || 0) + 1;
      const latest = mails.map((m) => m.updated_at).filter(Boolean).sort().pop();
      const failed = Boolean(counts.failed);
      const summary = el("summary", {}, [
        el("strong", { textContent: batchLabel(batch) }), " · " + formatTime(latest, state.timeZone) + " · ",
        ...Object.entries(counts).flatMap(([s, n], i) => [i ? ", " : "",
          el("span", { className: "state state-" + s, textContent: n + " " + s })]),
      ]);
      const items = mails.map((m) => el("li", {}, [
        m.kind + " → " + m.recipient + " ", el("span", { className: "state state-" + m.state, textContent: m.state }),
        ...(m.last_error ? [el("div", { className: "reply", textContent: "Reply: " + m.last_error })] : []),
      ]));
      return el("details", { className: "batch", open: failed }, [summary, el("ul", {}, items)]);
    }));
  }

  function actionButton(label, className, handler) {
    return el("button", { type: "button", className: "action " + className, textContent: label, onclick: handler });
  }

  function describe(order) {
    return "Order " + order.identifier.slice(0, 8) + " of " + (order.buyer.name || "an unnamed buyer") +
      " (" + order.amount + " " + order.currency + ")";
  }

  function actions(order) {
    const rule = STATUS[order.status];
    const buttons = [];
    if (rule.markPaid) buttons.push(actionButton("Mark paid", "mark-paid", () => act(order, "Mark as paid?",
      describe(order) + " becomes completed and the buyer gets the confirmation.", "Mark paid",
      () => call("/v1/orders/" + order.identifier, { method: "PATCH", body: { status: "completed" } }),
      () => "Order " + order.identifier + " is marked paid")));
    if (rule.cancel) buttons.push(actionButton("Cancel", "cancel", () => act(order, "Cancel this order?",
      describe(order) + " is cancelled for good: its tickets are released and the buyer is told.", "Cancel order",
      () => call("/v1/orders/" + order.identifier, { method: "PATCH", body: { status: "cancelled" } }),
      () => "Order " + order.identifier + " is cancelled")));
    if (order.resendable) buttons.push(actionButton("Resend", "resend", () => act(order, "Resend the confirmation?",
      describe(order) + ": the buyer and the attendees get their confirmation emails again.", "Resend",
      () => call(config.resendUrl, { method: "POST", body: { data: { order: order.identifier } } }), null)));
    return buttons.length ? el("div", { className: "actions" }, buttons) : el("span", { className: "none", textContent: "—" });
  }

  function cell(label, props, children) {
    const td = el("td", props, children);
    td.dataset.label = label;  // the phone layout shows it before the value
    return td;
  }

  function orderRow(order) {
    const row = el("tr", {}, [
      cell("Order", {}, [el("code", { textContent: order.identifier })]),
      cell("Buyer", {}, [el("div", { textContent: order.buyer.name || "—" }),
                         el("div", { className: "buyer-email", textContent: order.buyer.email || "" })]),
      cell("Amount", { className: "num", textContent: order.amount + " " + order.currency }),
      cell("Payment", { className: "payment", textContent: order.payment_mode || "—" }),
      cell("Status", {}, [el("span", { className: "badge badge-" + order.color, textContent: order.status })]),
      cell("Created", { className: "created", textContent: formatTime(order.created_at, state.timeZone) }),
      cell("Emails", {}, [emailGroups(order.emails)]),
      cell("Actions", {}, [actions(order)]),
    ]);
    row.dataset.identifier = order.identifier;
    row.dataset.status = order.status;
    return row;
  }

  function query(paged) {
    const q = new URLSearchParams();
    if (paged) { q.set("page", state.page); q.set("per_page", state.perPage); }
    if (state.status) q.set("status", state.status);
    if (state.q.trim()) q.set("q", state.q.trim());
    return q;
  }

  async function load() {
    history.replaceState(null, "", "?" + query(true));
    const response = await call(config.ordersUrl + "?" + query(true));
    if (response.status === 401) return signOut(await errorDetail(response));
    if (!response.ok) return showMessage(await errorDetail(response), "error");
    const data = await response.json();
    signedIn(true);
    state.timeZone = data.event.timezone;
    $("event-name").textContent = "· " + data.event.name;
    $("zone").textContent = "(" + data.event.timezone + ")";
    document.title = "Orders · " + data.event.name + " · ticketq";
    $("orders").tBodies[0].replaceChildren(...data.orders.map(orderRow));
    $("empty").hidden = data.orders.length > 0;
    const pages = Math.max(1, Math.ceil(data.total / state.perPage));
    $("page-info").textContent = "Page " + state.page + " of " + pages + " · " + data.total + " orders";
    $("prev").disabled = state.page <= 1;
    $("next").disabled = state.page >= pages;
    document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);  // tests wait on it
  }

  // The confirmation step: a modal <dialog> (Escape or Back closes it, focus starts on Back).
  function ask(title, text, yes) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-yes").textContent = yes;
    return new Promise((resolve) => {
      const done = (answer) => () => { dialog.close(); resolve(answer); };
      $("confirm-yes").onclick = done(true);
      $("confirm-no").onclick = done(false);
      dialog.oncancel = () => resolve(false);
      dialog.showModal();
    });
  }

  async function act(order, title, text, yes, request, success) {
    if (!(await ask(title, text, yes))) return;
    try {
      const response = await request();
      if (response.ok) {
        showMessage(success ? success() : (await response.json()).message, "success");
      } else if (response.status === 429) {
        const seconds = parseInt(response.headers.get("Retry-After") || "60", 10);
        showMessage(config.limitMessage + " Try again in " + seconds + " seconds.", "error");
      } else if (response.status === 401) {
        return signOut(await errorDetail(response));
      } else {
        showMessage(await errorDetail(response), "error");
      }
    } catch (e) {
      showMessage("Could not reach ticketq: " + e.message, "error");
    }
    await load();
  }

  async function exportCsv() {
    const response = await call(config.ordersUrl + ".csv?" + query(false), { accept: "text/csv" });
    if (!response.ok) return showMessage(await errorDetail(response), "error");
    const link = el("a", { href: URL.createObjectURL(await response.blob()),
      download: /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || "orders.csv" });
    document.body.append(link);
    link.click();
    link.remove();
  }

  let typing = null;
  $("search").value = state.q;
  $("search").addEventListener("input", (ev) => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.q = ev.target.value; state.page = 1; load(); }, 300);
  });
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); state.q = $("search").value; state.page = 1; load(); });
  $("status-filter").value = state.status;
  $("per-page").value = String(state.perPage);
  $("status-filter").addEventListener("change", (ev) => { state.status = ev.target.value; state.page = 1; load(); });
  $("per-page").addEventListener("change", (ev) => { state.perPage = +ev.target.value; state.page = 1; load(); });
  $("prev").addEventListener("click", () => { state.page -= 1; load(); });
  $("next").addEventListener("click", () => { state.page += 1; load(); });
  $("refresh").addEventListener("click", () => load());
  $("export").addEventListener("click", () => exportCsv());
  start(load);
})();
