import { DynamicModule, Global, Module } from '@nestjs/common';
import { AppConfig } from './app-config';

/* eslint-disable @typescript-eslint/no-unsafe-declaration-merging, @typescript-eslint/no-empty-object-type */
/**
 * DI token for the typed config. Declaration merging makes the token *be* the AppConfig shape, so
 * consumers inject `Config` with full types and no string token; the value is the plain object.
 */
export abstract class Config {}
export interface Config extends AppConfig {}
/* eslint-enable @typescript-eslint/no-unsafe-declaration-merging, @typescript-eslint/no-empty-object-type */

@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: AppConfig): DynamicModule {
    return { module: ConfigModule, providers: [{ provide: Config, useValue: config }], exports: [Config] };
  }
}
