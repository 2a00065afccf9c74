// The console: plain DOM, no framework. Every value goes in with textContent (never innerHTML), the ID token
// lives in this closure only (no localStorage, no cookie) and goes out as a bearer header, so there is no
// CSRF surface. The page polls the connection after Generate and updates itself when it becomes connected.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const session = { idToken: null, user: null, expiresAt: 0 };
  let config = null;
  let current = null; // the connection on the connection page
  let poll = null;

  // --- sign-in (Cognito InitiateAuth, USER_PASSWORD_AUTH) -----------------------------------------
  async function cognito(target, body) {
    const answer = await fetch(config.cognito_url, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": `AWSCognitoIdentityProviderService.${target}`,
      },
      body: JSON.stringify(body),
    });
    const data = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new Error(data.message || data.__type || `sign-in failed (${answer.status})`);
    return data;
  }

  let challenge = null;
  async function signIn(event) {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    const username = $("username").value.trim();
    try {
      let data;
      if (challenge) {
        data = await cognito("RespondToAuthChallenge", {
          ChallengeName: "NEW_PASSWORD_REQUIRED",
          ClientId: config.client_id,
          Session: challenge,
          ChallengeResponses: { USERNAME: username, NEW_PASSWORD: $("new-password").value },
        });
      } else {
        data = await cognito("InitiateAuth", {
          AuthFlow: "USER_PASSWORD_AUTH",
          ClientId: config.client_id,
          AuthParameters: { USERNAME: username, PASSWORD: $("password").value },
        });
      }
      if (data.ChallengeName === "NEW_PASSWORD_REQUIRED") {
        challenge = data.Session;
        $("new-password-row").hidden = false;
        $("sign-in-error").textContent = "Choose a new password to finish signing in.";
        return;
      }
      const result = data.AuthenticationResult;
      session.idToken = result.IdToken;
      session.expiresAt = Date.now() + (result.ExpiresIn || 3600) * 1000;
      session.user = username;
      challenge = null;
      $("password").value = "";
      $("new-password").value = "";
      route();
    } catch (error) {
      $("sign-in-error").textContent = error.message;
    }
  }

  function signOut() {
    session.idToken = null;
    session.user = null;
    stopPolling();
    current = null;
    route();
  }

  // --- the admin API -----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, error) {
      super(error.message || `request failed (${status})`);
      this.status = status;
      this.code = error.code;
      this.nextStep = error.next_step;
    }
  }

  async function api(method, path, body) {
    const answer = await fetch(`${config.api_base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${session.idToken}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await answer.json().catch(() => ({}));
    if (answer.status === 401) {
      signOut();
      throw new ApiError(401, { message: "Your sign-in has expired: sign in again." });
    }
    if (!answer.ok) throw new ApiError(answer.status, data.error || data);
    return data;
  }

  function errorText(error) {
    return error.nextStep ? `${error.message} ${error.nextStep}` : error.message;
  }

  // --- views --------------------------------------------------------------------------------------
  const views = ["sign-in-view", "list-view", "new-view", "connection-view"];
  function show(view) {
    for (const id of views) $(id).hidden = id !== view;
    $("sign-out").hidden = !session.idToken;
    $("who").textContent = session.user ? `Signed in as ${session.user}` : "";
  }

  function route() {
    stopPolling();
    if (!session.idToken || Date.now() > session.expiresAt) {
      session.idToken = null;
      show("sign-in-view");
      return;
    }
    const hash = location.hash || "#/";
    if (hash === "#/new") {
      show("new-view");
    } else if (hash.startsWith("#/c/")) {
      show("connection-view");
      loadConnection(decodeURIComponent(hash.slice(4)));
    } else {
      show("list-view");
      loadList();
    }
  }

  const when = (epoch) => (epoch ? new Date(epoch * 1000).toLocaleString() : "—");
  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text === null || text === undefined ? "—" : String(text);
    if (className) td.className = className;
    return td;
  }

  function statusText(c) {
    const status = c.status.replaceAll("_", " ");
    if (!c.attention) return status;
    return c.attention.startsWith(status) ? c.attention : `${status}: ${c.attention}`;
  }

  let listed = [];
  async function loadList() {
    try {
      const data = await api("GET", "/connections");
      listed = data.connections;
      renderList();
    } catch (error) {
      $("empty").hidden = false;
      $("empty").textContent = errorText(error);
    }
  }

  function matches(c) {
    const status = $("status-filter").value;
    const name = $("name-filter").value.trim().toLowerCase();
    if (name && !c.name.toLowerCase().includes(name)) return false;
    if (status === "attention") return Boolean(c.attention);
    if (status === "expiry") return Boolean(c.attention && c.attention.startsWith("hard expiry near"));
    return !status || c.status === status;
  }

  function renderList() {
    const body = $("connections").tBodies[0];
    body.replaceChildren();
    const shown = listed.filter(matches);
    for (const c of shown) {
      const row = body.insertRow();
      row.dataset.connectionId = c.connection_id;
      const link = document.createElement("a");
      link.href = `#/c/${encodeURIComponent(c.connection_id)}`;
      link.textContent = c.name;
      row.insertCell().append(link);
      cell(row, statusText(c), `status-${c.status}${c.attention ? " attention" : ""}`);
      cell(row, c.realm_id);
      cell(row, c.environment);
      cell(row, when(c.access_token_expires_at));
      cell(row, when(c.last_refreshed_at));
      cell(row, c.days_to_hard_expiry);
      cell(row, c.last_test ? (c.last_test.ok ? "OK" : c.last_test.error_code) : null);
    }
    $("empty").hidden = shown.length > 0;
    $("empty").textContent = listed.length ? "No connection matches the filter." : "No connections yet.";
  }

  async function create(event) {
    event.preventDefault();
    $("new-error").textContent = "";
    const body = {
      name: $("new-name").value.trim(),
      client_id: $("new-client-id").value.trim(),
      environment: $("new-environment").value,
    };
    if ($("new-realm").value.trim()) body.realm_id = $("new-realm").value.trim();
    try {
      const created = await api("POST", "/connections", body);
      $("new-form").reset();
      location.hash = `#/c/${encodeURIComponent(created.connection_id)}`;
    } catch (error) {
      $("new-error").textContent = errorText(error);
    }
  }

  // --- the connection page ------------------------------------------------------------------------
  async function loadConnection(id) {
    $("c-error").textContent = "";
    $("test-result").textContent = "";
    try {
      render(await api("GET", `/connections/${encodeURIComponent(id)}`));
      $("callback-url").textContent = (await api("GET", "/callback-url")).callback_url;
    } catch (error) {
      $("c-error").textContent = errorText(error);
    }
  }

  // Who gave the current consent (openid scopes only): Intuit's userinfo, or why it is unknown.
  function consentedBy(identity) {
    if (!identity) return "";
    if (!identity.sub) return `unknown (${identity.unknown_reason})`;
    return `${identity.email || "no email shared"}, Intuit user ${identity.sub}`;
  }

  function render(c) {
    current = c;
    $("c-name").textContent = c.name;
    $("c-status").textContent = `Status: ${c.status.replaceAll("_", " ")}`;
    $("c-status").className = `status status-${c.status}`;
    $("c-attention").textContent = c.attention || "";
    $("c-edit-name").value = c.name;
    $("c-environment").value = c.environment;
    $("c-base-url").textContent = c.base_url;
    $("c-realm").value = c.realm_id || "";
    $("c-client-id").value = c.client_id;
    $("c-secret-state").textContent = c.client_secret_set ? "set" : "not set";
    $("c-token-state").textContent =
      c.status === "connected"
        ? `valid until ${when(c.access_token_expires_at)} (refreshed ${when(c.last_refreshed_at)})`
        : "none";
    $("reset").disabled = c.status === "not_connected";
    $("c-consent-row").hidden = !c.consented_by;
    $("c-consented-by").textContent = consentedBy(c.consented_by);
    const events = $("c-events");
    events.replaceChildren();
    const timeline = [
      [c.created_at, "created"],
      [c.connected_at, `connected to ${c.company_name || c.realm_id || "the company"}`],
      [c.last_refreshed_at, "access token refreshed"],
      [c.last_test && c.last_test.tested_at, c.last_test && (c.last_test.ok ? "test passed" : `test failed: ${c.last_test.error_code}`)],
      [c.last_revocation ? c.updated_at : null, c.last_revocation && `reset (revocation: ${c.last_revocation})`],
    ].filter(([at, what]) => at && what).sort((a, b) => b[0] - a[0]);
    for (const [at, what] of timeline) {
      const item = document.createElement("li");
      item.textContent = `${when(at)}: ${what}`;
      events.append(item);
    }
  }

  async function action(button, work) {
    $("c-error").textContent = "";
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      $("c-error").textContent = errorText(error);
    } finally {
      button.disabled = false;
      if (current) $("reset").disabled = current.status === "not_connected";
    }
  }

  const path = (suffix = "") => `/connections/${encodeURIComponent(current.connection_id)}${suffix}`;

  async function save(event) {
    event.preventDefault();
    const change = {};
    const name = $("c-edit-name").value.trim();
    const realm = $("c-realm").value.trim();
    const clientId = $("c-client-id").value.trim();
    if (name !== current.name) change.name = name;
    if ($("c-environment").value !== current.environment) change.environment = $("c-environment").value;
    if (realm !== (current.realm_id || "")) change.realm_id = realm || null;
    if (clientId !== current.client_id) change.client_id = clientId;
    if (!Object.keys(change).length) return;
    await action($("save"), async () => render(await api("PATCH", path(), change)));
  }

  function openSecretDialog() {
    $("secret-input").value = "";
    $("secret-error").textContent = "";
    $("secret-dialog").showModal();
  }

  async function saveSecret(event) {
    event.preventDefault();
    const input = $("secret-input");
    try {
      render(await api("PUT", path("/client-secret"), { client_secret: input.value }));
      input.value = "";
      $("secret-dialog").close();
    } catch (error) {
      $("secret-error").textContent = errorText(error);
    }
  }

  async function generate() {
    await action($("generate"), async () => {
      const link = await api("POST", path("/authorize-link"), {});
      window.open(link.authorize_url, "_blank", "noopener");
      startPolling();
    });
  }

  function startPolling() {
    stopPolling();
    const until = Date.now() + 10 * 60 * 1000;
    const id = current.connection_id;
    const since = current.connected_at;
    poll = setInterval(async () => {
      if (!current || current.connection_id !== id || Date.now() > until) return stopPolling();
      try {
        const fresh = await api("GET", `/connections/${encodeURIComponent(id)}`);
        render(fresh);
        if (fresh.status === "connected" && fresh.connected_at !== since) stopPolling();
      } catch (error) {
        stopPolling();
      }
    }, 1500);
  }

  function stopPolling() {
    if (poll) clearInterval(poll);
    poll = null;
  }

  async function reset() {
    if (!confirm(`Reset "${current.name}"? Its tokens are revoked at Intuit and workflows lose access until it is connected again.`)) return;
    await action($("reset"), async () => render(await api("POST", path("/reset"), {})));
  }

  async function test() {
    $("test-result").textContent = "Testing…";
    await action($("test"), async () => {
      const report = await api("POST", path("/test"), {});
      $("test-result").textContent = report.ok
        ? `OK: connected to company "${report.company_name}" (${report.latency_ms} ms)`
        : `${report.error.code}: ${report.error.message} ${report.error.next_step || ""}`.trim();
      $("test-result").className = report.ok ? "ok" : "fail";
      render(await api("GET", path()));
    });
  }

  async function copyCallback() {
    const text = $("callback-url").textContent;
    try {
      await navigator.clipboard.writeText(text);
      $("copy-callback").textContent = "Copied";
    } catch (error) {
      const range = document.createRange();
      range.selectNodeContents($("callback-url"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      $("copy-callback").textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => ($("copy-callback").textContent = "Copy"), 2000);
  }

  // --- start --------------------------------------------------------------------------------------
  async function start() {
    config = await (await fetch("/console/config.json")).json();
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", signOut);
    $("status-filter").addEventListener("change", renderList);
    $("name-filter").addEventListener("input", renderList);
    $("new-form").addEventListener("submit", create);
    $("edit-form").addEventListener("submit", save);
    $("set-secret").addEventListener("click", openSecretDialog);
    $("secret-form").addEventListener("submit", saveSecret);
    $("secret-cancel").addEventListener("click", () => {
      $("secret-input").value = "";
      $("secret-dialog").close();
    });
    $("generate").addEventListener("click", generate);
    $("reset").addEventListener("click", reset);
    $("test").addEventListener("click", test);
    $("copy-callback").addEventListener("click", copyCallback);
    window.addEventListener("hashchange", route);
    route();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
