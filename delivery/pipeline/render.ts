// Render stage: the template for this channel and the user's locale (the version the send
// pins, else the one published; `ctx.rendered` says which, for the message log), with the signed
// unsubscribe/preference links in `links`; email links written in the templates become signed
// click URLs, an open pixel is added, and every non-transactional email carries RFC 8058
// one-click List-Unsubscribe; SMS and push links written in the templates become short links
// (`/s/<code>`), tracked the same way.
import type { Channel } from '../../platform/contracts.ts';
import { errorMessage } from '../../platform/errors.ts';
import type { RenderedContent } from '../provider.ts';
import { TRANSACTIONAL } from '../preferences/model.ts';
import { rewriteEmail } from '../tracking/rewrite.ts';
import { shortenLinks, type Shortener } from '../tracking/short-links.ts';
import type { MessageRef, TrackingLinks } from '../links.ts';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

/** The part of the template renderer the pipeline uses (delivery/templates). */
export interface Renderer {
  /** Renders `version` of a managed template (as versionFor named it); without it, the folder's files. */
  render(
    template: string,
    channel: Channel,
    locale: string,
    data: Record<string, unknown>,
    version?: number,
  ): RenderedContent;
  /**
   * The version this send renders: `pinned` (the send's templateVersion) when given, else the
   * one published for the channel and locale; null for templates read from files. Throws when
   * the template has no such version or none is published (the send goes to the DLQ).
   */
  versionFor(template: string, channel: Channel, locale: string, pinned?: number): number | null;
  /** Whether a rendered link was written in the templates, not taken from the data: only those are tracked. */
  isTemplateLink(url: string): boolean;
}

export function messageRef(ctx: SendContext): MessageRef {
  const { send } = ctx;
  return {
    sendId: send.sendId,
    userId: send.userId,
    ruleId: send.ruleId,
    channel: ctx.channel,
    variant: send.variant,
    category: send.category,
  };
}

export function createRenderStage(deps: {
  renderer: Renderer;
  links: TrackingLinks;
  publicBaseUrl: string;
  /** Short links of SMS and push; without it their links stay as rendered. */
  shortener?: Shortener;
}): Stage {
  return {
    name: 'render',
    async run(ctx: SendContext) {
      const { send, channel } = ctx;
      const ref = messageRef(ctx);
      const unsubscribeUrl = deps.links.unsubscribe(ref, ctx.now);
      const data: Record<string, unknown> = {
        ...send.data,
        sendId: send.sendId,
        links: {
          unsubscribe: unsubscribeUrl,
          preferences: deps.links.preferences(send.userId, ctx.now),
        },
      };
      let content: RenderedContent;
      let version: number | null;
      try {
        // Resolved once: a publish landing between the two calls cannot mix versions.
        version = deps.renderer.versionFor(
          send.template,
          channel,
          ctx.recipient.locale,
          send.templateVersion,
        );
        content = deps.renderer.render(
          send.template,
          channel,
          ctx.recipient.locale,
          data,
          version ?? undefined,
        );
      } catch (err) {
        return { kind: 'failed', reason: `render: ${errorMessage(err)}`, dlq: true };
      }
      const headers: Record<string, string> = {};
      if ((channel === 'sms' || channel === 'push') && deps.shortener) {
        content = await shortenLinks(content, ref, {
          shortener: deps.shortener,
          isTemplateLink: (url) => deps.renderer.isTemplateLink(url),
          publicBaseUrl: deps.publicBaseUrl,
          now: ctx.now,
        });
      }
      if (channel === 'email') {
        content = rewriteEmail(content, ref, {
          links: deps.links,
          publicBaseUrl: deps.publicBaseUrl,
          isTemplateLink: (url) => deps.renderer.isTemplateLink(url),
          now: ctx.now,
        });
        if (send.category !== TRANSACTIONAL) {
          headers['List-Unsubscribe'] = `<${unsubscribeUrl}>`;
          headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
        }
      }
      ctx.rendered = { templateVersion: version, locale: ctx.recipient.locale };
      ctx.message = {
        sendId: send.sendId,
        ruleId: send.ruleId,
        category: send.category,
        channel,
        recipient: ctx.recipient,
        content,
        headers,
      };
      return CONTINUE;
    },
  };
}
