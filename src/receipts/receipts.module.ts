import { Module } from '@nestjs/common';
import { markerStoreFactory } from './receipts.module-factory';
import { MarkerStore } from './marker.store';

/** v1.1 receipt markers: the router writes them, the gateway's receipts API reads them. */
@Module({ providers: [markerStoreFactory], exports: [MarkerStore] })
export class ReceiptsModule {}
