import { HttpException } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

/** The body of every error the backend APIs (publish, members) answer: `{code, message}`. */
export class ApiErrorBody {
  @ApiProperty({
    description:
      'machine-readable: bad_request, unauthorized, forbidden, not_found, too_large, unavailable (the WebSocket error codes where one applies)',
    example: 'forbidden',
  })
  code!: string;
  @ApiProperty({ example: 'bot-1 is not a member of conversation room-1' })
  message!: string;
  @ApiPropertyOptional({ description: 'batch requests: the index of the message refused' })
  index?: number;
}

export function apiError(status: number, code: string, message: string, index?: number): HttpException {
  return new HttpException(index === undefined ? { code, message } : { code, message, index }, status);
}
