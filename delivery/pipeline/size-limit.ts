// Size stage: a rendered message larger than LC_MAX_MESSAGE_BYTES fails here, after the
// render stage and before any provider call, into the DLQ with a reason that says what to
// fix. Emails of up to the limit (2 MB of HTML with inline `data:` images and more) pass
// Kafka (topics of 8 MiB records), the SMTP relay and the message log; a larger one would
// be refused somewhere on the way, after the provider had been called or not at all.
import type { Channel } from '../../platform/contracts.ts';
import type { RenderedContent } from '../provider.ts';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

/** What of a rendered message the limit applies to: an email's HTML, else the whole content. */
export function measuredPart(
  channel: Channel,
  content: RenderedContent,
): { what: string; bytes: number } {
  if (channel === 'email')
    return { what: 'rendered HTML', bytes: Buffer.byteLength(content.html ?? '', 'utf8') };
  return { what: 'rendered content', bytes: Buffer.byteLength(JSON.stringify(content), 'utf8') };
}

export function tooLargeReason(what: string, bytes: number, limit: number): string {
  return `message.too_large: ${what} is ${bytes} bytes, the limit is ${limit} (LC_MAX_MESSAGE_BYTES)`;
}

export function createSizeLimitStage(config: { maxMessageBytes: number }): Stage {
  return {
    name: 'size',
    async run(ctx: SendContext) {
      if (!ctx.message) return CONTINUE;
      const { what, bytes } = measuredPart(ctx.channel, ctx.message.content);
      if (bytes <= config.maxMessageBytes) return CONTINUE;
      return {
        kind: 'failed',
        reason: tooLargeReason(what, bytes, config.maxMessageBytes),
        dlq: true,
      };
    },
  };
}
