// The organizer order page: token in sessionStorage, data from the JSON API, text only via textContent.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const TOKEN_KEY = "ticketq.token";
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = {
    status: params.get("status") || "",
    page: Math.max(1, parseInt(params.get("page") || "1", 10) || 1),
    perPage: parseInt(params.get("per_page") || config.perPage, 10) || config.perPage,
    total: 0,
  };

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);  // strings become text nodes
    return node;
  }

  function showMessage(text, kind) {
    const box = $("message");
    box.textContent = text;
    box.className = kind;
    box.dataset.seq = String(Number(box.dataset.seq) + 1);
    box.hidden = false;
  }

  function authHeaders() {
    return { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY), Accept: "application/json" };
  }

  async function errorDetail(response) {
    try {
      const body = await response.json();
      if (body.errors && body.errors[0] && body.errors[0].detail) return body.errors[0].detail;
      if (typeof body.detail === "string") return body.detail;
    } catch (e) { /* not JSON */ }
    return "Request failed (HTTP " + response.status + ")";
  }

  function signedIn(yes) {
    $("sign-in").hidden = yes;
    $("orders-view").hidden = !yes;
    $("session-bar").hidden = !yes;
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    signedIn(false);
    if (message) showMessage(message, "error");
  }

  function emailList(emails) {
    if (!emails.length) return el("span", { className: "none", textContent: "none yet" });
    return el("ul", { className: "emails" }, emails.map((m) => el("li", { title: m.last_error || m.batch }, [
      m.kind + " → " + m.recipient + " ",
      el("span", { className: "state state-" + m.state, textContent: m.state }),
    ])));
  }

  function orderRow(order) {
    const action = order.resendable
      ? el("button", { type: "button", className: "resend", textContent: "Resend confirmation",
                       onclick: (ev) => resend(order.identifier, ev.currentTarget) })
      : "";
    const row = el("tr", {}, [
      el("td", {}, [el("code", { textContent: order.identifier })]),
      el("td", {}, [el("div", { textContent: order.buyer.name || "—" }),
                    el("div", { className: "buyer-email", textContent: order.buyer.email || "" })]),
      el("td", { className: "num", textContent: order.amount + " " + order.currency }),
      el("td", {}, [el("span", { className: "badge badge-" + order.color, textContent: order.status })]),
      el("td", { className: "created", textContent: new Date(order.created_at).toLocaleString() }),
      el("td", {}, [emailList(order.emails)]),
      el("td", {}, [action]),
    ]);
    row.dataset.identifier = order.identifier;
    row.dataset.status = order.status;
    return row;
  }

  async function load() {
    const query = new URLSearchParams({ page: state.page, per_page: state.perPage });
    if (state.status) query.set("status", state.status);
    history.replaceState(null, "", "?" + query);
    const response = await fetch(config.ordersUrl + "?" + query, { headers: authHeaders() });
    if (response.status === 401) return signOut(await errorDetail(response));
    if (!response.ok) return showMessage(await errorDetail(response), "error");
    const data = await response.json();
    signedIn(true);
    state.total = data.total;
    $("event-name").textContent = "· " + data.event.name;
    document.title = "Orders · " + data.event.name + " · ticketq";
    $("orders").tBodies[0].replaceChildren(...data.orders.map(orderRow));
    $("empty").hidden = data.orders.length > 0;
    const pages = Math.max(1, Math.ceil(data.total / state.perPage));
    $("page-info").textContent = "Page " + state.page + " of " + pages + " · " + data.total + " orders";
    $("prev").disabled = state.page <= 1;
    $("next").disabled = state.page >= pages;
  }

  async function resend(identifier, button) {
    button.disabled = true;
    try {
      const response = await fetch(config.resendUrl, {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
        body: JSON.stringify({ data: { order: identifier } }),
      });
      if (response.ok) {
        showMessage((await response.json()).message, "success");
      } else if (response.status === 429) {
        const seconds = parseInt(response.headers.get("Retry-After") || "60", 10);
        showMessage(config.limitMessage + " Try again in " + seconds + " seconds.", "error");
      } else if (response.status === 401) {
        signOut(await errorDetail(response));
      } else {
        showMessage(await errorDetail(response), "error");
      }
    } catch (e) {
      showMessage("Could not reach ticketq: " + e.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  $("sign-in-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    $("message").hidden = true;
    load();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => load());
  $("status-filter").value = state.status;
  $("per-page").value = String(state.perPage);
  $("status-filter").addEventListener("change", (ev) => { state.status = ev.target.value; state.page = 1; load(); });
  $("per-page").addEventListener("change", (ev) => { state.perPage = +ev.target.value; state.page = 1; load(); });
  $("prev").addEventListener("click", () => { state.page -= 1; load(); });
  $("next").addEventListener("click", () => { state.page += 1; load(); });
  if (sessionStorage.getItem(TOKEN_KEY)) load(); else signedIn(false);
})();
