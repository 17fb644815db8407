/**
 * The page `--inspect` serves (see `./inspect.ts`): it embeds the Stately inspector UI (the
 * hosted one, or a self-hosted copy: `--inspector-url`) in an iframe and relays the local
 * WebSocket's inspection events into it once the UI says it is connected.
 *
 * Offline, an iframe of the hosted UI is a blank grey box: so the page checks that the UI
 * can be reached (a no-cors request: it fails only when the browser cannot get an answer
 * at all) and waits for the UI's `@statelyai.connected` handshake; when either fails it
 * says so in plain words and points to the agent's own inspector view (`/inspector` of
 * the status API), which needs no internet.
 */

/** How long the page waits for the UI's handshake before saying it has not answered. */
export const HANDSHAKE_WAIT_MS = 10_000;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A value for an inline script: JSON that cannot end the `<script>` element. */
function scriptValue(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

/** @internal What the bridge page needs for one request. */
export interface BridgePage {
  /** The inspector UI to embed. */
  readonly uiUrl: string;
  /** The agent's local inspector view, when known. */
  readonly localView: string | undefined;
  readonly nonce: string;
}

/** @internal The page's Content-Security-Policy for `nonce`. */
export function bridgeCsp(nonce: string): string {
  return (
    `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; ` +
    // The UI may live anywhere (hosted, self-hosted); the probe fetches it; the relay is ws.
    "frame-src http: https:; connect-src 'self' ws: wss: http: https:; img-src data:; " +
    "base-uri 'none'; form-action 'none'"
  );
}

/**
 * @internal The bridge page. Everything the page writes comes from here, escaped; its
 * script only shows or hides what is already there.
 */
export function bridgeHtml({ uiUrl, localView, nonce }: BridgePage): string {
  const origin = new URL(uiUrl).origin;
  const ui = escapeHtml(uiUrl);
  const n = escapeHtml(nonce);
  const local = localView
    ? `The agent's own inspector view needs no internet: <a id="local-view" href="${escapeHtml(localView)}">${escapeHtml(localView)}</a> (the timeline of events and snapshots, the statechart at each step).`
    : "The agent's own inspector view needs no internet: open <code>/inspector</code> on its status API (the panel's address).";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kora-opstate · Stately inspector</title>
<link rel="icon" href="data:,">
<style nonce="${n}">html,body{margin:0;height:100%;font:15px/1.45 system-ui,sans-serif}
body{display:flex;flex-direction:column}iframe{border:0;width:100%;flex:1}
#notice{padding:14px 20px;background:#fef3c7;border-bottom:2px solid #d97706;color:#451a03}
#notice p{margin:0 0 6px}#notice[hidden],#notice p[hidden]{display:none}</style></head>
<body>
<div id="notice" role="alert" hidden>
<p id="unreachable" hidden><strong>The Stately inspector at <code>${ui}</code> cannot be reached from this browser</strong> (no network, blocked, or down), so the frame below stays blank.</p>
<p id="silent" hidden><strong>The Stately inspector at <code>${ui}</code> has not answered</strong> after ${HANDSHAKE_WAIT_MS / 1000} s: the page below may have failed to load, or may not be a Stately inspector.</p>
<p>${local}</p>
<p>A self-hosted copy of the Stately inspector: <code>kora-opstate start --inspect --inspector-url URL</code>.</p>
</div>
<iframe id="inspector" src="${ui}" title="Stately inspector"></iframe>
<script nonce="${n}">
(function () {
  var UI = ${scriptValue(uiUrl)};
  var ORIGIN = ${scriptValue(origin)};
  var frame = document.getElementById('inspector');
  var pending = [];
  var ready = false;
  function say(id) {
    if (ready) return;
    document.getElementById('notice').hidden = false;
    document.getElementById(id).hidden = false;
    document.body.setAttribute('data-inspector', id);
  }
  fetch(UI, { mode: 'no-cors', cache: 'no-store' }).catch(function () { say('unreachable'); });
  setTimeout(function () { say('silent'); }, ${HANDSHAKE_WAIT_MS});
  window.addEventListener('message', function (e) {
    if (e.source !== frame.contentWindow || e.origin !== ORIGIN) return;
    if (e.data && e.data.type === '@statelyai.connected') {
      ready = true;
      document.getElementById('notice').hidden = true;
      document.body.setAttribute('data-inspector', 'connected');
      pending.forEach(function (m) { frame.contentWindow.postMessage(m, ORIGIN); });
      pending = [];
    }
  });
  var ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host);
  ws.onmessage = function (e) {
    var m = JSON.parse(e.data);
    if (ready) frame.contentWindow.postMessage(m, ORIGIN);
    else if (pending.push(m) > 1000) pending.shift();
  };
})();
</script></body></html>`;
}
