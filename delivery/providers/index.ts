// Channel providers behind one interface (delivery/provider.ts): SMTP relays, webhook, SMS,
// push. The in-app provider is in inapp/; delivery/channels.ts builds each channel's list.
export type {
  Provider,
  ProviderResult,
  OutgoingMessage,
  Recipient,
  RenderedContent,
} from '../provider.ts';
export {
  createSmtpProvider,
  classifySmtpError,
  unsubscribeHeaders,
  messageIdFor,
} from './email.ts';
export {
  createWebhookProvider,
  signWebhook,
  verifyWebhookSignature,
  SIGNATURE_HEADER,
} from './webhook.ts';
export { createRelayLookup, type RelayLookup } from './relay-lookup.ts';
export { isForbiddenAddress, resolveTarget } from './ssrf.ts';
export { createSmsProvider } from './sms.ts';
export { createPushProvider } from './push.ts';
export {
  createDeviceRegistry,
  type DeviceRegistry,
  type DevicePlatform,
  type Device,
} from './devices.ts';
