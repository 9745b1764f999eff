import { ApiOperation, ApiProduces, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Controller, Get, Header, NotFoundException } from '@nestjs/common';
import { Config } from '../config/config.module';
import { MetricsService } from './metrics.service';

@ApiTags('metrics')
@Controller('metrics')
export class MetricsController {
  constructor(
    private readonly metrics: MetricsService,
    private readonly config: Config,
  ) {}

  /** 404 when METRICS_PORT moved the endpoint off the public port (MetricsServer serves it there). */
  @Get()
  @ApiOperation({ summary: 'Prometheus metrics (404 when METRICS_PORT moves them to another port)' })
  @ApiProduces('text/plain')
  @ApiResponse({ status: 200, description: 'Prometheus text format' })
  @ApiResponse({ status: 404, description: 'served on METRICS_PORT instead' })
  @Header('Content-Type', 'text/plain; version=0.0.4')
  scrape(): Promise<string> {
    if (this.config.metricsPort !== null) throw new NotFoundException();
    return this.metrics.registry.metrics();
  }
}
