//! Extensions shipped with Terima.

use terima_core::{Inspected, Provider};
use tracing::info;

use crate::process::{Extension, ExtensionError, WorkContext};

/// The example extension: tells the customer when a Biteship order is
/// delivered. Here the "notification" is a log line naming the order and the
/// event, never the customer's name, phone or address; a team replaces the
/// `info!` with its WhatsApp or e-mail call and passes `ctx.event_id` to it as
/// the idempotency key.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveredNotification;

impl Extension for DeliveredNotification {
    fn applies(&self, event: &Inspected) -> bool {
        event.provider == Provider::Biteship
            && event.reading.event_type == "order.status"
            && event.reading.status.as_deref() == Some("delivered")
    }

    async fn handle(&self, ctx: &WorkContext<'_>) -> Result<(), ExtensionError> {
        info!(
            notification = "order_delivered",
            order_id = %ctx.event.reading.resource.id,
            event_id = ctx.event_id,
            "customer notified: order delivered"
        );
        Ok(())
    }
}
