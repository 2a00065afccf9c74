// Cognito's USER_SRP_AUTH sign-in (SRP-6a), with WebCrypto and BigInt: the password never leaves this page.
// The page sends Cognito A = g^a; Cognito answers a salt, B and a secret block; the page proves it knows the
// password by an HMAC over the secret block with a key only someone who knows it can derive. Cognito's variant:
// N the 3072-bit MODP prime of RFC 3526, g = 2, SHA-256 over the bytes of even-length hex (00 in front when the
// top bit is set), k = H(N, g), u = H(A, B), x = H(salt, SHA-256(pool name + user id + ":" + password)),
// S = (B - k * g^x)^(a + u * x), key = HKDF-SHA256(S, salt u, "Caldera Derived Key")[0:16],
// claim = HMAC-SHA256(key, pool name + user id + secret block + timestamp). The local stack's Cognito checks it
// the same way (local/qbo_local/faults/strict_cognito.py), and so does an independent client in the tests.
"use strict";

const CognitoSrp = (() => {
  const N = BigInt(
    "0xFFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD" +
      "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
      "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F" +
      "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
      "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510" +
      "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7" +
      "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C" +
      "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
  );
  const G = 2n;
  const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const utf8 = (text) => new TextEncoder().encode(text);

  function paddedHex(number) {
    let hex = number.toString(16);
    if (hex.length % 2) hex = `0${hex}`;
    return "89abcdef".includes(hex[0]) ? `00${hex}` : hex;
  }
  const hexToBytes = (hex) => Uint8Array.from(hex.match(/../g) || [], (pair) => parseInt(pair, 16));
  const bytesToHex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
  const bytesToBase64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
  const base64ToBytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

  async function sha256Hex(bytes) {
    return bytesToHex(await crypto.subtle.digest("SHA-256", bytes));
  }
  async function hashOfHex(...hexes) {
    return BigInt(`0x${await sha256Hex(hexToBytes(hexes.join("")))}`);
  }
  function modPow(base, exponent, modulus) {
    let result = 1n;
    let square = base % modulus;
    for (let e = exponent; e > 0n; e >>= 1n) {
      if (e & 1n) result = (result * square) % modulus;
      square = (square * square) % modulus;
    }
    return result;
  }
  function concat(...parts) {
    const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      joined.set(part, offset);
      offset += part.length;
    }
    return joined;
  }
  function timestamp(now) {
    const two = (n) => String(n).padStart(2, "0");
    const time = `${two(now.getUTCHours())}:${two(now.getUTCMinutes())}:${two(now.getUTCSeconds())}`;
    return `${WEEKDAYS[now.getUTCDay()]} ${MONTHS[now.getUTCMonth()]} ${now.getUTCDate()} ${time} UTC ${now.getUTCFullYear()}`;
  }

  // The first step: a = 128 random bytes, A = g^a mod N (never 0 mod N).
  function start() {
    for (;;) {
      const a = BigInt(`0x${bytesToHex(crypto.getRandomValues(new Uint8Array(128)))}`);
      const A = modPow(G, a, N);
      if (A % N !== 0n) return { a, A, srpA: A.toString(16) };
    }
  }

  // The answer to Cognito's PASSWORD_VERIFIER challenge: the ChallengeResponses of RespondToAuthChallenge.
  async function answer({ a, A }, challenge, poolId, password, now = new Date()) {
    const poolName = poolId.split("_")[1];
    const userId = challenge.USER_ID_FOR_SRP;
    const B = BigInt(`0x${challenge.SRP_B}`);
    if (B % N === 0n) throw new Error("Cognito's challenge is not valid: sign in again");
    const k = await hashOfHex(paddedHex(N), paddedHex(G));
    const u = await hashOfHex(paddedHex(A), paddedHex(B));
    if (u === 0n) throw new Error("Cognito's challenge is not valid: sign in again");
    const identity = await sha256Hex(utf8(`${poolName}${userId}:${password}`));
    const x = await hashOfHex(paddedHex(BigInt(`0x${challenge.SALT}`)), identity);
    const base = (((B - k * modPow(G, x, N)) % N) + N) % N;
    const S = modPow(base, a + u * x, N);
    const material = await crypto.subtle.importKey("raw", hexToBytes(paddedHex(S)), "HKDF", false, ["deriveBits"]);
    const derived = await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: hexToBytes(paddedHex(u)), info: utf8("Caldera Derived Key") },
      material,
      128,
    );
    const key = await crypto.subtle.importKey("raw", derived, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const when = timestamp(now);
    const message = concat(utf8(poolName), utf8(userId), base64ToBytes(challenge.SECRET_BLOCK), utf8(when));
    return {
      USERNAME: userId,
      PASSWORD_CLAIM_SECRET_BLOCK: challenge.SECRET_BLOCK,
      PASSWORD_CLAIM_SIGNATURE: bytesToBase64(await crypto.subtle.sign("HMAC", key, message)),
      TIMESTAMP: when,
    };
  }

  return { start, answer };
})();
