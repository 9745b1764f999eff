import { Batcher } from '../../common/batcher';
import { ConversationDirectory } from '../conversation-directory';
import { Membership, MembershipCheck, membershipIn } from '../membership-check';

/**
 * Membership from the directory itself, under its own rules: the HTTP directory's TTL cache, or a read
 * of the built-in store per check (so a change applies to the next check with nothing to invalidate).
 * With `batched`, the checks of one tick share one directory call (one query for the SQL store); an
 * in-process store is read directly.
 */
export class DirectoryMembershipDriver extends MembershipCheck {
  private readonly batcher: Batcher<string, string[] | null> | null;

  constructor(
    private readonly directory: ConversationDirectory,
    batched = true,
  ) {
    super();
    this.batcher = batched
      ? new Batcher(async (ids) => {
          const found = await this.directory.members([...new Set(ids)]);
          return ids.map((id) => found.get(id) ?? null);
        })
      : null;
  }

  async check(conversationId: string, userId: string): Promise<Membership> {
    const members = this.batcher
      ? await this.batcher.add(conversationId)
      : (await this.directory.members([conversationId])).get(conversationId);
    return membershipIn(members, userId);
  }

  async changed(): Promise<void> {}
}
