import { DynamicModule, Global, Module } from '@nestjs/common';
import { AppConfig } from './app-config';

/** DI token for the typed config; an abstract class keeps injection type-safe without string tokens. */
export abstract class Config {}
// Declaration merging: the Config token *is* the AppConfig shape for consumers.
// eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unsafe-declaration-merging
export interface Config extends AppConfig {}

@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: AppConfig): DynamicModule {
    return { module: ConfigModule, providers: [{ provide: Config, useValue: config }], exports: [Config] };
  }
}
