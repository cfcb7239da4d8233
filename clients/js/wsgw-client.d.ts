// Types of wsgw-client.js (README.md). A CommonJS module: `import WsgwClient = require('wsgw-client')`,
// or a default import with esModuleInterop.

declare namespace WsgwClient {
  interface Position { offset: number; epoch: string; }

  interface Message {
    data: string | Uint8Array | ArrayBuffer;
    binary: boolean;
    channel: string | null; // "user:<id>", "room:<name>", or null
    offset: number;         // 0: not kept in the channel's history
    epoch: string;
    recovered: boolean;     // delivered by a recovery, before its 'recovery' event
  }

  interface Recovery { channel: string; recovered: boolean; offset: number; epoch: string; }

  interface Options {
    protocol?: boolean;
    token?: string | null | (() => string | Promise<string>);
    user?: string | null;
    params?: Record<string, string> | null;
    positions?: Record<string, Position> | null;
    rooms?: string[] | null;
    reconnect?: boolean;
    minDelay?: number;
    maxDelay?: number;
    factor?: number;
    jitter?: number;
    reconnectOnKick?: boolean;
    maxPositions?: number;
    WebSocket?: unknown;
    random?: () => number;
  }

  type State = 'connecting' | 'open' | 'reconnecting' | 'closed';
}

declare class WsgwClient {
  static PROTOCOL: 'wsgw.v1.json';
  constructor(url: string, options?: WsgwClient.Options);
  readonly state: WsgwClient.State;
  protocol: string;
  connect(): this;
  close(code?: number, reason?: string): void;
  disconnect(): void;
  ready(): Promise<void>;
  send(data: string | ArrayBuffer | ArrayBufferView): boolean;
  join(room: string): boolean;
  leave(room: string): boolean;
  say(room: string, text: string): boolean;
  rooms(): string[];
  positions(): Record<string, WsgwClient.Position>;
  setPosition(channel: string, offset: number, epoch: string): void;
  on(event: 'message' | `message:${string}`, fn: (m: WsgwClient.Message) => void): () => void;
  on(event: 'recovery', fn: (r: WsgwClient.Recovery) => void): () => void;
  on(event: 'state', fn: (s: WsgwClient.State) => void): () => void;
  on(event: 'open', fn: (e: { protocol: string; reconnect: boolean }) => void): () => void;
  on(event: 'close', fn: (e: { code: number; reason: string; reconnect: number }) => void): () => void;
  on(event: 'position', fn: (p: WsgwClient.Position & { channel: string }) => void): () => void;
  on(event: 'error', fn: (e: Error) => void): () => void;
  off(event: string, fn: (arg: any) => void): void;
  once(event: string, fn: (arg: any) => void): () => void;
}

export = WsgwClient;
