import { OutboxSchema1767225600000 } from './1767225600000-outbox-schema';
import { DirectorySchema1767225600001 } from './1767225600001-directory-schema';
import { OutboxPayloadText1767225600002 } from './1767225600002-outbox-payload-text';
import { OutboxSharedEntries1767225600003 } from './1767225600003-outbox-shared-entries';
import { ReceiptMarkers1767225600004 } from './1767225600004-receipt-markers';

/** Every migration, oldest first. Add new ones at the end; never edit one that has shipped. */
export const MIGRATIONS = [
  OutboxSchema1767225600000,
  DirectorySchema1767225600001,
  OutboxPayloadText1767225600002,
  OutboxSharedEntries1767225600003,
  ReceiptMarkers1767225600004,
];
