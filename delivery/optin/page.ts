// The pages of a confirmation link. The GET only asks (mail scanners open every link of a
// message, and must not subscribe anyone); the button posts to the same signed URL.
import { esc, layout } from '../preferences/page.ts';
import { MARKETING } from '../preferences/model.ts';

const what = (category: string) =>
  category === MARKETING ? 'news and offers' : category.replace(/[_-]+/g, ' ');

export function confirmPage(opts: { action: string; category: string; channel: string }): string {
  return layout(
    'Confirm your subscription',
    `<h1>Confirm your subscription</h1>
<p>Please confirm that you want to get <strong>${esc(what(opts.category))}</strong> by ${esc(opts.channel)}.</p>
<form method="post" action="${esc(opts.action)}"><input type="hidden" name="confirm" value="1"><button type="submit">Yes, subscribe me</button></form>
<p class="note">If you did not ask for this, ignore this page and the email: you will not be subscribed.</p>`,
  );
}

export function confirmedPage(opts: { category: string; channel: string; at: number }): string {
  return layout(
    'Subscription confirmed',
    `<h1>Thank you</h1>
<p class="status" role="status">You confirmed on ${esc(new Date(opts.at).toISOString().slice(0, 10))} that you want to get ${esc(what(opts.category))} by ${esc(opts.channel)}.</p>
<p class="note">Every message has a link to unsubscribe.</p>`,
  );
}

export function expiredRequestPage(): string {
  return layout(
    'Link expired',
    `<h1>This confirmation link has expired</h1>
<p>Nothing was changed: you are not subscribed. To subscribe, sign up again where you found the offer.</p>`,
  );
}

export function withdrawnRequestPage(): string {
  return layout(
    'Request withdrawn',
    `<h1>This request was withdrawn</h1>
<p>You opted out after asking, so nothing was changed: you are not subscribed.</p>`,
  );
}
