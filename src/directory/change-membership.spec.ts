import { HttpException } from '@nestjs/common';
import { changeMembership } from './directory.controller';
import { Membership, MembershipCheck } from './membership-check';

class RecordingCheck extends MembershipCheck {
  changes: string[] = [];
  fail = false;
  async check(): Promise<Membership> {
    return 'member';
  }
  async changed(conversationId: string): Promise<void> {
    if (this.fail) throw new Error('redis down');
    this.changes.push(conversationId);
  }
}

describe('changeMembership (the directory API around a store change)', () => {
  it('invalidates after the change, also when it changed nothing or failed, and returns or rethrows its outcome', async () => {
    const check = new RecordingCheck();
    await expect(changeMembership(check, 'c1', async () => 'done')).resolves.toBe('done');
    await expect(changeMembership(check, 'c2', async () => null)).resolves.toBeNull();
    await expect(
      changeMembership(check, 'c3', async () => {
        throw new Error('commit outcome unknown');
      }),
    ).rejects.toThrow('commit outcome unknown');
    expect(check.changes).toEqual(['c1', 'c2', 'c3']);
  });

  it('answers 503 unavailable when the invalidation fails, so the caller retries the idempotent request', async () => {
    const check = new RecordingCheck();
    check.fail = true;
    const failed = changeMembership(check, 'c1', async () => 'done');
    await expect(failed).rejects.toBeInstanceOf(HttpException);
    await expect(failed).rejects.toMatchObject({ status: 503, response: { code: 'unavailable' } });
  });
});
