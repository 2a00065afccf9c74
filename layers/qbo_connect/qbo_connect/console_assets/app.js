// The console: plain DOM, no framework (srp.js, loaded first, signs in). Every value goes in with textContent (never innerHTML), the ID token
// lives in this closure only (no localStorage, no cookie) and goes out as a bearer header, so there is no
// CSRF surface. The page polls the connection after Generate and updates itself when it becomes connected.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const session = { idToken: null, user: null, expiresAt: 0 };
  let config = null;
  let current = null; // the connection on the connection page
  let poll = null;

  // --- sign-in (Cognito USER_SRP_AUTH: srp.js proves the password without sending it; then the second factor) ----
  // The pool requires an authenticator app (TOTP): a first sign-in sets one up (MFA_SETUP), every later one
  // answers SOFTWARE_TOKEN_MFA with its code. Each step's Cognito session lasts 3 minutes; a wrong code may be
  // tried again within them. Sessions, the key and the tokens stay in this closure and the page, never in a log.
  class CognitoError extends Error {
    constructor(type, message) {
      super(message);
      this.type = type;
    }
  }

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
    if (!answer.ok) {
      const type = String(data.__type || "").split("#").pop();
      throw new CognitoError(type, data.message || type || `sign-in failed (${answer.status})`);
    }
    return data;
  }

  async function passwordVerified(username, password) {
    const srp = CognitoSrp.start();
    const started = await cognito("InitiateAuth", {
      AuthFlow: "USER_SRP_AUTH",
      ClientId: config.client_id,
      AuthParameters: { USERNAME: username, SRP_A: srp.srpA },
    });
    if (started.ChallengeName !== "PASSWORD_VERIFIER") throw new Error(`unexpected sign-in step ${started.ChallengeName}`);
    const responses = await CognitoSrp.answer(srp, started.ChallengeParameters, config.user_pool_id, password);
    const request = { ChallengeName: "PASSWORD_VERIFIER", ClientId: config.client_id, ChallengeResponses: responses };
    if (started.Session) request.Session = started.Session;
    return cognito("RespondToAuthChallenge", request);
  }

  const respond = (name, responses) =>
    cognito("RespondToAuthChallenge", {
      ChallengeName: name,
      ClientId: config.client_id,
      Session: challenge.session,
      ChallengeResponses: { USERNAME: challenge.user, ...responses },
    });

  let challenge = null; // the step Cognito waits for: { name, session, user }
  const STEPS = { NEW_PASSWORD_REQUIRED: "sign-in-form", MFA_SETUP: "mfa-setup-form", SOFTWARE_TOKEN_MFA: "mfa-code-form" };

  function showStep(form) {
    for (const id of ["sign-in-form", "mfa-setup-form", "mfa-code-form"]) $(id).hidden = id !== form;
    $("sign-in-restart").hidden = form === "sign-in-form" && !challenge;
  }

  // What Cognito answered: tokens, or the next step to show.
  async function proceed(data, username) {
    if (data.AuthenticationResult) return signedIn(data.AuthenticationResult, challenge ? challenge.user : username);
    const name = data.ChallengeName;
    if (!(name in STEPS)) throw new Error(`Cognito asks for ${name || "another step"}, which this console does not handle`);
    const parameters = data.ChallengeParameters || {};
    challenge = { name, session: data.Session, user: parameters.USER_ID_FOR_SRP || (challenge && challenge.user) || username };
    if (name === "NEW_PASSWORD_REQUIRED") {
      // The password is proven (and cleared from the page): what the form needs now is the new one.
      $("password").required = false;
      $("new-password").required = true;
      $("new-password-row").hidden = false;
      $("sign-in-error").textContent = "Choose a new password to finish signing in.";
    } else if (name === "MFA_SETUP") {
      const associated = await cognito("AssociateSoftwareToken", { Session: challenge.session });
      challenge.session = associated.Session;
      showKey(associated.SecretCode, challenge.user);
      $("mfa-setup-code").focus();
    } else {
      $("mfa-code").value = "";
      $("mfa-code").focus();
    }
    showStep(STEPS[name]);
  }

  function showKey(secret, user) {
    $("mfa-secret").textContent = secret.replace(/(.{4})(?=.)/g, "$1 ");
    const label = encodeURIComponent(`qbo-connect:${user}@${location.hostname}`);
    const uri = `otpauth://totp/${label}?secret=${secret}&issuer=qbo-connect&algorithm=SHA1&digits=6&period=30`;
    $("mfa-uri").textContent = uri;
    $("mfa-uri").href = uri;
  }

  // Six digits, as people type them (spaces and all); null when it cannot be a code.
  function typedCode(field) {
    const code = $(field).value.replace(/\s+/g, "");
    return /^[0-9]{6}$/.test(code) ? code : null;
  }

  const CODE_REFUSED =
    "That code was not accepted. Enter the code your authenticator app shows now (each lasts 30 seconds; if codes keep failing, check the device's clock).";
  const SETUP_CODE_REFUSED =
    "That code was not accepted. Check that the app holds the key shown above (not an older one) and enter the code it shows now.";

  // A refusal the person can act on, said so; the step stays open where a retry can work.
  function refused(error) {
    if (error.type === "NotAuthorizedException" && /session/i.test(error.message)) {
      startAgain();
      return "This sign-in took longer than Cognito allows for a step (3 minutes): sign in again with your password.";
    }
    if (error.type === "CodeMismatchException") return challenge && challenge.name === "MFA_SETUP" ? SETUP_CODE_REFUSED : CODE_REFUSED;
    if (error.type === "EnableSoftwareTokenMFAException") return SETUP_CODE_REFUSED;
    return error.message;
  }

  async function signIn(event) {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    const username = $("username").value.trim();
    try {
      const data = challenge
        ? await respond("NEW_PASSWORD_REQUIRED", { NEW_PASSWORD: $("new-password").value })
        : await passwordVerified(username, $("password").value);
      $("password").value = "";
      $("new-password").value = "";
      $("new-password-row").hidden = true;
      await proceed(data, username);
    } catch (error) {
      $("sign-in-error").textContent = refused(error);
    }
  }

  // A typed code: its shape checked here, the code by Cognito; a refused one is cleared for another try.
  async function submitCode(field, answer) {
    $("sign-in-error").textContent = "";
    const code = typedCode(field);
    if (!code) return ($("sign-in-error").textContent = "Enter the 6 digits your authenticator app shows.");
    try {
      await proceed(await answer(code));
    } catch (error) {
      $(field).value = "";
      $("sign-in-error").textContent = refused(error);
    }
  }

  function submitSetupCode(event) {
    event.preventDefault();
    submitCode("mfa-setup-code", async (code) => {
      const verified = await cognito("VerifySoftwareToken", {
        Session: challenge.session,
        UserCode: code,
        FriendlyDeviceName: "qbo-connect console",
      });
      challenge.session = verified.Session;
      return respond("MFA_SETUP", {});
    });
  }

  function submitSignInCode(event) {
    event.preventDefault();
    submitCode("mfa-code", (code) => respond("SOFTWARE_TOKEN_MFA", { SOFTWARE_TOKEN_MFA_CODE: code }));
  }

  // Back to the password form, forgetting the step, its session and the key shown.
  function startAgain() {
    challenge = null;
    for (const id of ["password", "new-password", "mfa-setup-code", "mfa-code"]) $(id).value = "";
    $("mfa-secret").textContent = "";
    $("mfa-uri").textContent = "";
    $("mfa-uri").removeAttribute("href");
    $("new-password-row").hidden = true;
    $("password").required = true;
    $("new-password").required = false;
    showStep("sign-in-form");
  }

  function signedIn(result, user) {
    session.idToken = result.IdToken;
    session.expiresAt = Date.now() + (result.ExpiresIn || 3600) * 1000;
    session.user = user;
    startAgain();
    $("sign-in-error").textContent = "";
    route();
  }

  function signOut() {
    session.idToken = null;
    session.user = null;
    startAgain();
    stopPolling();
    forgetPage();
    route();
  }

  // What the session put in the page goes with it: the next person at this browser sees none of it, not even
  // while their own list loads.
  const SESSION_VIEWS = ["list-view", "new-view", "connection-view"];
  const SESSION_TEXT = [
    "c-name", "c-status", "c-attention", "c-base-url", "c-secret-state", "c-token-state", "c-consented-by",
    "test-result", "callback-url", "c-error", "c-events-error", "new-error", "empty",
  ];
  function forgetPage() {
    current = null;
    listed = [];
    olderThan = null;
    for (const view of SESSION_VIEWS.map($)) {
      for (const field of view.querySelectorAll("input")) field.value = "";
      for (const choice of view.querySelectorAll("select")) choice.selectedIndex = 0;
      for (const body of view.querySelectorAll("tbody")) body.replaceChildren();
      for (const button of view.querySelectorAll("button")) button.disabled = false;
    }
    for (const id of SESSION_TEXT) $(id).textContent = "";
    $("c-consent-row").hidden = true;
    $("older-events").hidden = true;
    $("secret-input").value = "";
    if ($("secret-dialog").open) $("secret-dialog").close();
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
    const token = session.idToken;
    const answer = await fetch(`${config.api_base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await answer.json().catch(() => ({}));
    // An answer that arrives after its session ended is dropped: its caller never resumes, so none of it
    // reaches the page (a poll or a list still on its way at sign-out).
    if (session.idToken !== token) return new Promise(() => {});
    if (answer.status === 401) {
      signOut();
      throw new ApiError(401, { message: "Your sign-in has expired: sign in again." });
    }
    if (answer.status === 403 && data.error && data.error.code === "forbidden") {
      // Signed in, but not an administrator: back to the sign-in form, saying why and what to do.
      signOut();
      $("sign-in-error").textContent = errorText(new ApiError(403, data.error));
      throw new ApiError(403, data.error);
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
    if (status === "expiry") return Boolean(c.grant_ending_soon);
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
    $("c-events").tBodies[0].replaceChildren();
    $("older-events").hidden = true;
    try {
      render(await api("GET", `/connections/${encodeURIComponent(id)}`));
      loadEvents();
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
    $("c-refresh-policy").value = c.refresh_policy;
    $("c-secret-state").textContent = c.client_secret_set ? "set" : "not set";
    const expired = c.access_token_expires_at !== null && c.access_token_expires_at * 1000 <= Date.now();
    $("c-token-state").textContent =
      c.status !== "connected"
        ? "none"
        : expired && c.refresh_policy === "on_demand"
          ? `refreshed when a workflow asks (last ${when(c.last_refreshed_at)})`
          : `valid until ${when(c.access_token_expires_at)} (refreshed ${when(c.last_refreshed_at)})`;
    $("reset").disabled = c.status === "not_connected";
    $("c-consent-row").hidden = !c.consented_by;
    $("c-consented-by").textContent = consentedBy(c.consented_by);
  }

  // The connection's event history (GET .../events), newest first; "Older events" pages back.
  const EVENTS_PAGE = 10;
  let olderThan = null;
  async function loadEvents(older = false) {
    if (!current) return;
    const id = current.connection_id;
    const query = older && olderThan ? `&before=${encodeURIComponent(olderThan)}` : "";
    $("c-events-error").textContent = "";
    try {
      const page = await api("GET", `/connections/${encodeURIComponent(id)}/events?limit=${EVENTS_PAGE}${query}`);
      if (!current || current.connection_id !== id) return;
      const body = $("c-events").tBodies[0];
      if (!older) body.replaceChildren();
      for (const e of page.events) {
        const row = body.insertRow();
        row.dataset.eventId = e.event_id;
        cell(row, when(e.occurred_at));
        cell(row, e.detail_type.replace(/^Connection /, ""));
        cell(row, e.published ? e.summary : `${e.summary} (not yet on EventBridge)`);
      }
      olderThan = page.next_before;
      $("older-events").hidden = !olderThan;
    } catch (error) {
      $("c-events-error").textContent = errorText(error);
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
      loadEvents();
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
    if ($("c-refresh-policy").value !== current.refresh_policy) change.refresh_policy = $("c-refresh-policy").value;
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
      loadEvents();
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
        if (fresh.status === "connected" && fresh.connected_at !== since) {
          stopPolling();
          loadEvents();
        }
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
    if (!confirm(`Reset "${current.name}"? Its tokens are cleared, and revoked at Intuit unless another connection uses this app on the same company; workflows lose access until it is connected again.`)) return;
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
    $("mfa-setup-form").addEventListener("submit", submitSetupCode);
    $("mfa-code-form").addEventListener("submit", submitSignInCode);
    $("sign-in-restart").addEventListener("click", () => {
      startAgain();
      $("sign-in-error").textContent = "";
    });
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
    $("older-events").addEventListener("click", () => loadEvents(true));
    window.addEventListener("hashchange", route);
    route();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
