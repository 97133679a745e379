// Push device tokens per user, in Redis under the user's hash tag: a hash token -> JSON
// {platform, registeredAt}. Apps register a token on login/refresh and unregister it on
// logout; the push provider removes tokens the push service reports as dead.
import type { Redis } from 'ioredis';
import type { KeySpace } from '../../platform/keys.ts';

export type DevicePlatform = 'fcm' | 'apns';

export interface Device {
  token: string;
  platform: DevicePlatform;
  registeredAt: number;
}

export interface DeviceRegistry {
  register(
    userId: string,
    device: { token: string; platform: DevicePlatform },
    now?: number,
  ): Promise<void>;
  unregister(userId: string, token: string): Promise<boolean>;
  list(userId: string): Promise<Device[]>;
  /** Forgets every device of the user (right to be forgotten). */
  erase(userId: string): Promise<void>;
}

/** Devices kept per user; registering more drops the least recently registered. */
export const MAX_DEVICES_PER_USER = 20;

export function createDeviceRegistry(deps: { redis: Redis; keys: KeySpace }): DeviceRegistry {
  const key = (userId: string) => deps.keys.user(userId, 'devices');

  async function list(userId: string): Promise<Device[]> {
    const raw = await deps.redis.hgetall(key(userId));
    const out: Device[] = [];
    for (const [token, json] of Object.entries(raw)) {
      try {
        const v = JSON.parse(json) as { platform?: unknown; registeredAt?: unknown };
        out.push({
          token,
          platform: v.platform === 'apns' ? 'apns' : 'fcm',
          registeredAt: typeof v.registeredAt === 'number' ? v.registeredAt : 0,
        });
      } catch {
        out.push({ token, platform: 'fcm', registeredAt: 0 });
      }
    }
    return out.sort((a, b) => b.registeredAt - a.registeredAt || a.token.localeCompare(b.token));
  }

  return {
    async register(userId, device, now = Date.now()) {
      if (!device.token || device.token.length > 4096)
        throw new Error('device token must be 1..4096 characters');
      await deps.redis.hset(
        key(userId),
        device.token,
        JSON.stringify({ platform: device.platform, registeredAt: now }),
      );
      const all = await list(userId);
      const stale = all.slice(MAX_DEVICES_PER_USER).map((d) => d.token);
      if (stale.length > 0) await deps.redis.hdel(key(userId), ...stale);
    },
    async unregister(userId, token) {
      return (await deps.redis.hdel(key(userId), token)) > 0;
    },
    list,
    async erase(userId) {
      await deps.redis.del(key(userId));
    },
  };
}
