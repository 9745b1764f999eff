import { ArgumentsHost, Catch, Controller, RpcExceptionFilter, UseFilters } from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import { Observable, throwError } from 'rxjs';
import { BusBatch } from '../bus/message-bus';
import { BUS_BATCH } from './bus.transport';
import { RouterService } from './router.service';

/**
 * Nest's default RPC filter turns any error into `{status:'error', message:'Internal server error'}`;
 * the bus driver must see the original one (its retry log names the reason, and the router's
 * quarantine already decided outage vs poison).
 */
@Catch()
export class RethrowFilter implements RpcExceptionFilter<unknown> {
  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    return throwError(() => exception);
  }
}

/** The router's entry point: each bus batch the BusTransport hands over. */
@Controller()
@UseFilters(RethrowFilter)
export class RouterController {
  constructor(private readonly router: RouterService) {}

  @EventPattern(BUS_BATCH)
  route(@Payload() batch: BusBatch): Promise<void> {
    return this.router.route(batch);
  }
}
