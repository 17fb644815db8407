/** Escaping for the two places the panel puts data into markup. */

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Escapes text for HTML/SVG element content and quoted attribute values.
 *
 * @example
 * escapeHtml('<b>"x"</b>'); // '&lt;b&gt;&quot;x&quot;&lt;/b&gt;'
 */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/**
 * JSON safe inside a `<script type="application/json">` element: no `<` (so no `</script>`
 * and no `<!--`) and no line separators that older parsers end a line on.
 *
 * @example
 * scriptJson({ t: '</script>' }); // '{"t":"\\u003c/script>"}'
 */
export function scriptJson(value: unknown): string {
  return scriptJsonText(JSON.stringify(value));
}

/**
 * {@link scriptJson} for JSON already serialized (the app's cached status text).
 *
 * @example
 * scriptJsonText('{"t":"</script>"}'); // '{"t":"\\u003c/script>"}'
 */
export function scriptJsonText(json: string): string {
  return json
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}
