import { DomainError } from '../../shared/errors/domain.ts';

/** No order with this id: not in the read model, the write model, nor the `orders` queue (404). */
export class OrderNotFoundError extends DomainError {
  readonly code = 'order.not_found';
  readonly status = 404;
  constructor(readonly orderId: string) {
    super(`order ${orderId} not found`);
  }
}
