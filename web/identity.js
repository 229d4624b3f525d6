// identity.js: who you are (a display name in any script and a stable client id) and how others are named.
//
// Rules: a person picks a display name (free text, 1-64 characters); the app derives the client id once
// as an ASCII slug of it plus a random suffix ("Ana" -> "ana-3f2a") and keeps both in localStorage, so
// the same browser keeps its identity and a new name keeps the id. Whether a message is yours is
// decided by client id, never by name. Names of others come from the server's `display_name` when it
// sends one (messages, presence), else from presence data, else the client id; two client ids with
// the same name are told apart by their id ("Ana · ana-3f2a").

const IDENTITY_KEY = "agentchat.identity";
const LEGACY_NAME_KEY = "agentchat.name";
const CLIENT_ID = /^[A-Za-z0-9][A-Za-z0-9_\-.@]{0,63}$/;
export const MAX_NAME = 64;

/** Cleans a typed display name: trimmed, inner whitespace collapsed; "" when empty or too long. */
export function cleanDisplayName(raw) {
  const name = String(raw).normalize("NFC").replace(/\s+/g, " ").trim();
  return [...name].length >= 1 && [...name].length <= MAX_NAME ? name : "";
}

/** An ASCII slug of a name for client ids: "Zoë Li" -> "zoe-li"; "guest" when nothing ASCII is left. */
export function slug(name) {
  const ascii = String(name)
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/, "");
  return ascii || "guest";
}

/** A new client id for `name`: its slug and four random hex digits. */
export function newClientId(name) {
  const bytes = new Uint8Array(2);
  crypto.getRandomValues(bytes);
  const suffix = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${slug(name)}-${suffix}`;
}

/** The identity kept in this browser, {name, clientId}, or null on a first visit. */
export function loadIdentity(storage = localStorage) {
  try {
    const kept = JSON.parse(storage.getItem(IDENTITY_KEY) || "null");
    if (kept && cleanDisplayName(kept.name) && CLIENT_ID.test(kept.clientId || "")) {
      return { name: cleanDisplayName(kept.name), clientId: kept.clientId };
    }
  } catch (_) {
    /* unreadable: a first visit */
  }
  return null;
}

/** A name from before display names existed, to offer in the dialog. */
export function legacyName(storage = localStorage) {
  return cleanDisplayName(storage.getItem(LEGACY_NAME_KEY) || "");
}

/** Keeps `name` as this browser's display name; the client id is made once and then kept. */
export function saveIdentity(name, storage = localStorage) {
  const kept = loadIdentity(storage);
  const identity = { name, clientId: kept ? kept.clientId : newClientId(name) };
  storage.setItem(IDENTITY_KEY, JSON.stringify(identity));
  return identity;
}

/** The display name a message or presence member carries, if any (server field, then presence data). */
export function carriedName(item) {
  if (!item) return "";
  if (typeof item.display_name === "string") return cleanDisplayName(item.display_name);
  const data = item.data;
  if (data && typeof data === "object" && typeof data.display_name === "string") {
    return cleanDisplayName(data.display_name);
  }
  return "";
}

/** What the page knows about everyone's display names, by client id. */
export class Names {
  constructor() {
    this.byClient = new Map();
  }

  /** Records `name` for `clientId`; returns true when it changed what is shown. */
  learn(clientId, name) {
    if (!clientId || !name || this.byClient.get(clientId) === name) return false;
    this.byClient.set(clientId, name);
    return true;
  }

  /** Learns from a message or presence member carrying a display name. */
  learnFrom(item) {
    return item ? this.learn(item.client_id, carriedName(item)) : false;
  }

  /** The display name of `clientId` (the id itself when none is known). */
  name(clientId) {
    return this.byClient.get(clientId) || clientId || "?";
  }

  /** Whether another client id goes by the same name. */
  collides(clientId) {
    const name = this.byClient.get(clientId);
    if (!name) return false;
    const key = name.toLocaleLowerCase();
    for (const [other, otherName] of this.byClient) {
      if (other !== clientId && (otherName.toLocaleLowerCase() === key || other.toLowerCase() === key)) return true;
    }
    return false;
  }

  /** "Ana", or "Ana · ana-3f2a" when someone else is called Ana too. */
  label(clientId) {
    return this.collides(clientId) ? this.full(clientId) : this.name(clientId);
  }

  /** "Ana · ana-3f2a" (for hover titles), or the id alone when no name is known. */
  full(clientId) {
    const name = this.byClient.get(clientId);
    return name && name !== clientId ? `${name} · ${clientId}` : clientId || "?";
  }
}
