// Render stage: the template for this channel and the user's locale, with the signed
// unsubscribe/preference links in `links`; email links written in the templates become signed
// click URLs, an open pixel is added, and every non-transactional email carries RFC 8058
// one-click List-Unsubscribe.
import type { Channel } from '../../platform/contracts.ts';
import { errorMessage } from '../../platform/errors.ts';
import type { RenderedContent } from '../provider.ts';
import { TRANSACTIONAL } from '../preferences/model.ts';
import { rewriteEmail } from '../tracking/rewrite.ts';
import type { MessageRef, TrackingLinks } from '../links.ts';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

/** The part of the template renderer the pipeline uses (delivery/templates). */
export interface Renderer {
  render(
    template: string,
    channel: Channel,
    locale: string,
    data: Record<string, unknown>,
  ): RenderedContent;
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
      try {
        content = deps.renderer.render(send.template, channel, ctx.recipient.locale, data);
      } catch (err) {
        return { kind: 'failed', reason: `render: ${errorMessage(err)}`, dlq: true };
      }
      const headers: Record<string, string> = {};
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
      ctx.rendered = { templateVersion: null, locale: ctx.recipient.locale };
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
