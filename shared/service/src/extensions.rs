//! Extensions shipped with Terima.

use terima_core::TypedEvent;
use terima_core::providers::biteship::Status;
use tracing::info;

use crate::process::{Extension, ExtensionError, WorkContext};

/// The example extension: tells the customer when a Biteship order is
/// delivered. Here the "notification" is a log line naming the order and the
/// event, never the customer's name, phone or address; a team replaces the
/// `info!` with its WhatsApp or e-mail call and passes `ctx.event_id` to it as
/// the idempotency key.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveredNotification;

impl DeliveredNotification {
    /// Whether this event is one the extension acts on.
    pub fn applies(ctx: &WorkContext<'_>) -> bool {
        matches!(&ctx.event.event, TypedEvent::Biteship(e)
            if e.event == "order.status" && e.status == Some(Status::Delivered))
    }
}

impl Extension for DeliveredNotification {
    async fn handle(&self, ctx: &WorkContext<'_>) -> Result<(), ExtensionError> {
        if Self::applies(ctx) {
            info!(
                notification = "order_delivered",
                order_id = %ctx.event.resource.id,
                event_id = ctx.event_id,
                "customer notified: order delivered"
            );
        }
        Ok(())
    }
}
