// The organizer order page: search, filter, export, and per order mark paid / cancel / resend, each
// after a confirmation; the table reloads after every action. Every text goes through t() (session.js):
// the English message, translated from the catalogs (templates/locales) into the page's language.
"use strict";
(function () {
  const { config, $, el, t, call, errorDetail, showMessage, signedIn, signOut, formatTime, formatNumber,
          formatAmount, formatDuration, start } = window.TQ;
  const STATUS = Object.fromEntries(config.statuses.map((s) => [s.value, s]));
  const params = new URLSearchParams(location.search);
  const state = {
    status: params.get("status") || "",
    q: params.get("q") || "",
    page: Math.max(1, parseInt(params.get("page") || "1", 10) || 1),
    perPage: parseInt(params.get("per_page") || config.perPage, 10) || config.perPage,
    timeZone: "UTC",
  };

  // The names the API writes (statuses, email states, batches), as the organizer reads them: literal
  // t() calls, so `make messages` extracts each (the status filter's options use the same messages).
  function statusName(status) {
    const names = { initializing: t("initializing"), placed: t("placed"), pending: t("pending"),
                    completed: t("completed"), expired: t("expired"), cancelled: t("cancelled") };
    return Object.prototype.hasOwnProperty.call(names, status) ? names[status] : status;
  }

  function stateName(state) {
    const names = { queued: t("queued"), sending: t("sending"), sent: t("sent"), failed: t("failed") };
    return Object.prototype.hasOwnProperty.call(names, state) ? names[state] : state;
  }

  function batchLabel(batch) {
    if (batch === "confirmation") return t("First confirmation");
    if (batch === "cancellation") return t("Cancellation");
    if (batch === "payment-received") return t("Payment received");
    const resend = /^resend-(\d+)$/.exec(batch);
    if (resend) return t("Resend %(number)s", { number: formatNumber(Number(resend[1])) });
    return batch.charAt(0).toUpperCase() + batch.slice(1).replace(/-/g, " ");
  }

  // The 429's first sentence, from RESEND_LIMIT_PER_USER ({amount, multiples, unit} in the config):
  // "Only 5 resend actions are allowed in a minute.", as the server words it in English.
  function limitMessage() {
    const limit = config.limit;
    if (!limit) return t("Too many resend actions.");
    const amount = formatNumber(limit.amount);
    if (limit.multiples === 1) {
      switch (limit.unit) {
        case "second": return t("Only %(amount)s resend actions are allowed in a second.", { amount });
        case "minute": return t("Only %(amount)s resend actions are allowed in a minute.", { amount });
        case "hour": return t("Only %(amount)s resend actions are allowed in an hour.", { amount });
        case "day": return t("Only %(amount)s resend actions are allowed in a day.", { amount });
        case "month": return t("Only %(amount)s resend actions are allowed in a month.", { amount });
        case "year": return t("Only %(amount)s resend actions are allowed in a year.", { amount });
      }
    }
    return t("Only %(amount)s resend actions are allowed in %(period)s.",
      { amount, period: formatDuration(limit.multiples, limit.unit) });
  }

  // One <details> per sending (first confirmation, each resend, the cancellation), oldest first:
  // its time and states at a glance, the emails and a failed one's server reply inside.
  function emailGroups(emails) {
    if (!emails.length) return el("span", { className: "none", textContent: t("none yet") });
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
          el("span", { className: "state state-" + s, textContent: formatNumber(n) + " " + stateName(s) })]),
      ]);
      const items = mails.map((m) => el("li", {}, [
        m.kind + " → " + m.recipient + " ",
        el("span", { className: "state state-" + m.state, textContent: stateName(m.state) }),
        ...(m.last_error
          ? [el("div", { className: "reply", textContent: t("Reply: %(error)s", { error: m.last_error }) })] : []),
      ]));
      return el("details", { className: "batch", open: failed }, [summary, el("ul", {}, items)]);
    }));
  }

  function actionButton(label, className, handler) {
    return el("button", { type: "button", className: "action " + className, textContent: label, onclick: handler });
  }

  function describe(order) {
    const buyer = order.buyer.name || t("an unnamed buyer");  // not inside t(): Babel would not extract it
    return t("Order %(code)s of %(buyer)s (%(amount)s)",
      { code: order.identifier.slice(0, 8), buyer, amount: formatAmount(order.amount, order.currency) });
  }

  function actions(order) {
    const rule = STATUS[order.status];
    const buttons = [];
    const code = order.identifier;
    if (rule.markPaid) buttons.push(actionButton(t("Mark paid"), "mark-paid", () => act(order, t("Mark as paid?"),
      t("%(order)s becomes completed and the buyer gets the confirmation.", { order: describe(order) }), t("Mark paid"),
      () => call("/v1/orders/" + code, { method: "PATCH", body: { status: "completed" } }),
      () => t("Order %(code)s is marked paid", { code }))));
    if (rule.cancel) buttons.push(actionButton(t("Cancel"), "cancel", () => act(order, t("Cancel this order?"),
      t("%(order)s is cancelled for good: its tickets are released and the buyer is told.",
        { order: describe(order) }), t("Cancel order"),
      () => call("/v1/orders/" + code, { method: "PATCH", body: { status: "cancelled" } }),
      () => t("Order %(code)s is cancelled", { code }))));
    if (order.resendable) buttons.push(actionButton(t("Resend"), "resend", () => act(order, t("Resend the confirmation?"),
      t("%(order)s: the buyer and the attendees get their confirmation emails again.", { order: describe(order) }),
      t("Resend"),
      () => call(config.resendUrl, { method: "POST", body: { data: { order: code } } }),
      () => t("Confirmation emails for order %(code)s have been queued", { code }))));
    return buttons.length ? el("div", { className: "actions" }, buttons) : el("span", { className: "none", textContent: "—" });
  }

  function cell(column, label, props, children) {
    const td = el("td", props, children);
    td.dataset.col = column;  // the phone layout's grid places the cell by it
    td.dataset.label = label;  // and shows this before the value
    return td;
  }

  function orderRow(order) {
    const row = el("tr", {}, [
      cell("order", t("Order"), {}, [el("code", { textContent: order.identifier })]),
      cell("buyer", t("Buyer"), {}, [el("div", {}, [el("bdi", { textContent: order.buyer.name || "—" })]),
        el("div", { className: "buyer-email" }, [el("bdi", { textContent: order.buyer.email || "" })])]),
      cell("amount", t("Amount"), { className: "num", textContent: formatAmount(order.amount, order.currency) }),
      cell("payment", t("Payment"), { className: "payment", textContent: order.payment_mode || "—" }),
      cell("status", t("Status"), {}, [el("span", { className: "badge badge-" + order.color,
                                                      textContent: statusName(order.status) })]),
      cell("created", t("Created"), { className: "created", textContent: formatTime(order.created_at, state.timeZone) }),
      cell("emails", t("Emails"), {}, [emailGroups(order.emails)]),
      cell("actions", t("Actions"), {}, [actions(order)]),
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
    $("event-name").replaceChildren("· ", el("bdi", { textContent: data.event.name }));  // its own direction
    $("zone").textContent = "(" + data.event.timezone + ")";
    document.title = t("Orders · %(event)s · ticketq", { event: data.event.name });
    $("orders").tBodies[0].replaceChildren(...data.orders.map(orderRow));
    $("empty").hidden = data.orders.length > 0;
    const pages = Math.max(1, Math.ceil(data.total / state.perPage));
    $("page-info").textContent = t("Page %(page)s of %(pages)s · %(count)s orders",
      { page: formatNumber(state.page), pages: formatNumber(pages), count: formatNumber(data.total) });
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
        showMessage(success(), "success");
      } else if (response.status === 429) {
        const seconds = parseInt(response.headers.get("Retry-After") || "60", 10);
        showMessage(limitMessage() + " " + t("Try again in %(wait)s.", { wait: formatDuration(seconds, "second") }),
          "error");
      } else if (response.status === 401) {
        return signOut(await errorDetail(response));
      } else {
        showMessage(await errorDetail(response), "error");
      }
    } catch (e) {
      showMessage(t("Could not reach ticketq: %(error)s", { error: e.message }), "error");
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
