import { OutboxSchema1767225600000 } from './1767225600000-outbox-schema';
import { DirectorySchema1767225600001 } from './1767225600001-directory-schema';
import { OutboxPayloadText1767225600002 } from './1767225600002-outbox-payload-text';

/** Every migration, oldest first. Add new ones at the end; never edit one that has shipped. */
export const MIGRATIONS = [
  OutboxSchema1767225600000,
  DirectorySchema1767225600001,
  OutboxPayloadText1767225600002,
];
