// The end user's pages: the preference page (signed link) and the unsubscribe confirmation.
// Plain server-rendered HTML with forms, so they work without JavaScript and in any client.
import type { Channel } from '../../platform/contracts.ts';
import { pageSecurityPolicy } from '../../platform/http.ts';
import type { MessageType, MessageTypes } from '../../platform/message-types.ts';
import type { UserPreferences } from './model.ts';
import { MARKETING, typeIsOn } from './model.ts';

export const esc = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

/** Channels a person can choose on the page (webhooks are the product's, not theirs). */
export const PAGE_CHANNELS: readonly Channel[] = ['email', 'sms', 'push', 'inapp'];
const CHANNEL_LABEL: Record<Channel, string> = {
  email: 'Email',
  sms: 'SMS',
  push: 'Push',
  inapp: 'In-app',
  webhook: 'Webhook',
};

const label = (category: string) =>
  category === MARKETING
    ? 'News and offers'
    : category.replace(/[_-]+/g, ' ').replace(/^./, (c) => c.toUpperCase());

/** The pages' one stylesheet, inline; the only inline code their Content-Security-Policy admits. */
const PAGE_STYLE = `
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1f2328;line-height:1.5}
h1{font-size:1.5rem}table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{padding:.5rem;border-bottom:1px solid #d0d7de;text-align:center}
th:first-child,td:first-child{text-align:left}td small{display:block;color:#57606a}button{font-size:1rem;padding:.5rem 1.25rem;border-radius:6px;border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer}
.note{color:#57606a;font-size:.9rem}.status{padding:.75rem;border-radius:6px;background:#dafbe1;border:1px solid #4ac26b}`;

/**
 * Headers of every end-user page: HTML, never cached (each carries a signed link), and a
 * policy that runs no script, admits only the pages' own stylesheet, and lets forms post
 * only to this server.
 */
export const PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': pageSecurityPolicy({ styles: [PAGE_STYLE], formsSelf: true }),
});

/** The frame of every end-user page: the one stylesheet PAGE_HEADERS admits, no script. */
export function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${esc(title)}</title>
<style>${PAGE_STYLE}</style></head><body>${body}</body></html>`;
}

/** Categories shown: marketing, plus every category the person has a record for. */
export function pageCategories(prefs: UserPreferences, extra: readonly string[] = []): string[] {
  return [...new Set([MARKETING, ...extra, ...Object.keys(prefs.consents)])].filter(
    (c) => c !== 'transactional',
  );
}

export function isChecked(prefs: UserPreferences, category: string, channel: Channel): boolean {
  const r = prefs.consents[category]?.[channel];
  return r ? r.granted : category !== MARKETING;
}

/**
 * The message types a person can switch on the page, each with the page's channels it is
 * sent on: users cannot switch off what they must get (billing, security).
 */
export function pageTypes(types: MessageTypes): { type: MessageType; channels: Channel[] }[] {
  return types.list
    .filter((t) => t.switchable)
    .map((type) => ({
      type,
      channels: PAGE_CHANNELS.filter((c) => type.channels[c] !== undefined),
    }))
    .filter((t) => t.channels.length > 0);
}

function typesTable(prefs: UserPreferences, types: MessageTypes): string {
  const rows = pageTypes(types);
  if (rows.length === 0) return '';
  const cells = rows.flatMap((r) => r.channels.map((c) => `${r.type.id}:${c}`));
  const body = rows
    .map(
      ({ type, channels }) =>
        `<tr><td>${esc(type.label)}<small>${esc(type.description)}</small></td>${PAGE_CHANNELS.map(
          (ch) =>
            channels.includes(ch)
              ? `<td><input type="checkbox" name="t:${esc(type.id)}:${ch}" aria-label="${esc(type.label)} by ${CHANNEL_LABEL[ch]}"${typeIsOn(prefs, type, ch) ? ' checked' : ''}></td>`
              : '<td></td>',
        ).join('')}</tr>`,
    )
    .join('');
  return `<h2>Which messages</h2>
<input type="hidden" name="shownTypes" value="${esc(cells.join(','))}">
<table><thead><tr><th>Message type</th>${PAGE_CHANNELS.map((ch) => `<th>${CHANNEL_LABEL[ch]}</th>`).join('')}</tr></thead><tbody>${body}</tbody></table>`;
}

export function preferencePage(
  prefs: UserPreferences,
  opts: {
    action: string;
    saved?: boolean;
    categories?: readonly string[];
    /** A marketing email opt-in waits for its confirmation email to be confirmed. */
    confirmationSent?: boolean;
    /** The declared message types: the switchable ones are listed, per channel. */
    types?: MessageTypes;
  },
): string {
  const categories = pageCategories(prefs, opts.categories);
  const cells = categories.flatMap((c) => PAGE_CHANNELS.map((ch) => `${c}:${ch}`));
  const rows = categories
    .map(
      (c) =>
        `<tr><td>${esc(label(c))}</td>${PAGE_CHANNELS.map(
          (ch) =>
            `<td><input type="checkbox" name="c:${esc(c)}:${ch}" aria-label="${esc(label(c))} by ${CHANNEL_LABEL[ch]}"${isChecked(prefs, c, ch) ? ' checked' : ''}></td>`,
        ).join('')}</tr>`,
    )
    .join('');
  return layout(
    'Your message preferences',
    `<h1>Your message preferences</h1>
${opts.saved ? '<p class="status" role="status">Your preferences were saved.</p>' : ''}
${opts.confirmationSent ? '<p class="status" role="status">We sent you an email: confirm with its link to get news and offers by email.</p>' : ''}
<form method="post" action="${esc(opts.action)}">
<input type="hidden" name="shown" value="${esc(cells.join(','))}">
<table><thead><tr><th>Messages</th>${PAGE_CHANNELS.map((ch) => `<th>${CHANNEL_LABEL[ch]}</th>`).join('')}</tr></thead><tbody>${rows}</tbody></table>
${opts.types ? typesTable(prefs, opts.types) : ''}
<p><label><input type="checkbox" name="all" value="1"${prefs.unsubscribedAll ? ' checked' : ''}> Unsubscribe from everything (you will still get essential account messages such as receipts and password resets)</label></p>
<button type="submit">Save preferences</button>
</form>`,
  );
}

export function unsubscribeConfirmPage(opts: {
  action: string;
  category: string;
  channel: string;
  preferencesUrl: string;
}): string {
  return layout(
    'Unsubscribe',
    `<h1>Unsubscribe?</h1>
<p>You will no longer get <strong>${esc(label(opts.category).toLowerCase())}</strong> by ${esc(CHANNEL_LABEL[opts.channel as Channel] ?? opts.channel)}.</p>
<form method="post" action="${esc(opts.action)}"><input type="hidden" name="confirm" value="1"><button type="submit">Unsubscribe</button></form>
<p class="note">Or <a href="${esc(opts.preferencesUrl)}">choose which messages you get</a>.</p>`,
  );
}

export function unsubscribedPage(opts: {
  category: string;
  channel: string;
  preferencesUrl: string;
}): string {
  return layout(
    'Unsubscribed',
    `<h1>You are unsubscribed</h1>
<p class="status" role="status">You will no longer get ${esc(label(opts.category).toLowerCase())} by ${esc(CHANNEL_LABEL[opts.channel as Channel] ?? opts.channel)}.</p>
<p class="note">Changed your mind? <a href="${esc(opts.preferencesUrl)}">Manage your preferences</a>.</p>`,
  );
}

export function invalidLinkPage(): string {
  return layout(
    'Link not valid',
    '<h1>This link is not valid</h1><p>It may have been mistyped or has expired. Nothing was changed.</p>',
  );
}

/** A short link (`/s/<code>`) that does not exist or has expired: nothing to show, nowhere to go. */
export function unknownShortLinkPage(): string {
  return layout(
    'Link not found',
    '<h1>This link does not exist or has expired</h1><p>Short links in text messages and notifications work for a limited time. Open the app or website directly instead.</p>',
  );
}

/** A link used more often than any person would (link-limits.ts). */
export function tooManyRequestsPage(): string {
  return layout(
    'Too many requests',
    '<h1>Too many requests for this link</h1><p>Please try again in a minute. Nothing was changed.</p>',
  );
}

/**
 * An expired click link: its destination as text, never as a link or a redirect, so an old
 * signed link cannot send anyone anywhere by itself; the reader can still copy it.
 */
export function expiredClickPage(url: string): string {
  return layout(
    'Link expired',
    `<h1>This link has expired</h1>
<p>It pointed to:</p>
<p><code>${esc(url)}</code></p>
<p class="note">If you know and trust this address, copy it into your browser.</p>`,
  );
}

/**
 * An expired unsubscribe or preference link. The page cannot tell who is asking, so it
 * changes nothing and sends the reader to the ways that can.
 */
export function expiredLinkPage(): string {
  return layout(
    'Link expired',
    `<h1>This link has expired</h1>
<p>Nothing was changed.</p>
<p>To stop or choose the messages you get, use the unsubscribe or preferences link at the bottom of a recent message from us (every message has one), or change your notification settings where you sign in to your account.</p>`,
  );
}
