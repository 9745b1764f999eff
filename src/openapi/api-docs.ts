import { INestApplication } from '@nestjs/common';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import { AppConfig } from '../config/app-config';

/** Where the document and its UI are served (API_DOCS=false turns both off: 404). */
export const OPENAPI_JSON_PATH = 'openapi.json';
export const DOCS_UI_PATH = 'docs';

/**
 * The OpenAPI document of every HTTP route, built from the controllers' @nestjs/swagger decorators
 * (test/e2e/openapi.e2e-spec.ts fails when a route is missing or undecorated). The WebSocket protocol
 * and the event stream are described by docs/asyncapi.yaml.
 */
export function buildApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('relay HTTP API')
    .setDescription(
      'Directory, membership and publish APIs for backends (admin API key as a bearer token outside dev auth), health and metrics. The WebSocket protocol (/ws) and the event stream are in docs/asyncapi.yaml; errors of the backend APIs are `{code, message}`.',
    )
    .setVersion('1')
    .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'ADMIN_API_KEY' })
    .build();
  return SwaggerModule.createDocument(app, config);
}

/** Serves `/openapi.json` and the UI at `/docs`; call before listen. */
export function setupApiDocs(app: INestApplication, config: AppConfig): void {
  if (!config.apiDocs) return;
  SwaggerModule.setup(DOCS_UI_PATH, app, () => buildApiDocument(app), {
    jsonDocumentUrl: OPENAPI_JSON_PATH,
    raw: ['json'],
  });
}
