import { Marker, markerKey, MarkerMove, MarkerStore } from '../marker.store';

/** In-process markers (embedded engine); one JS thread makes every move atomic. */
export class MemoryMarkerStoreDriver extends MarkerStore {
  private readonly markers = new Map<string, Marker>();
  private readonly byConversation = new Map<string, Set<string>>();

  async read(pairs: { conversationId: string; userId: string }[]): Promise<Marker[]> {
    return pairs.map(
      ({ conversationId, userId }) =>
        this.markers.get(markerKey(conversationId, userId)) ?? {
          conversationId,
          userId,
          delivered: 0,
          read: 0,
        },
    );
  }

  async advance(moves: MarkerMove[]): Promise<void> {
    for (const m of moves) {
      const key = markerKey(m.conversationId, m.userId);
      const old = this.markers.get(key) ?? {
        conversationId: m.conversationId,
        userId: m.userId,
        delivered: 0,
        read: 0,
      };
      const read = m.kind === 'read' ? Math.max(old.read, m.seq) : old.read;
      const delivered = Math.max(old.delivered, m.seq, read);
      this.markers.set(key, { ...old, delivered, read });
      let users = this.byConversation.get(m.conversationId);
      if (!users) this.byConversation.set(m.conversationId, (users = new Set()));
      users.add(m.userId);
    }
  }

  async list(conversationId: string, limit: number): Promise<Marker[]> {
    const users = [...(this.byConversation.get(conversationId) ?? [])].sort().slice(0, limit);
    return users.map((u) => this.markers.get(markerKey(conversationId, u))!);
  }

  async ping(): Promise<void> {}
}
