//! `events list|show`, `resources show`, `status`: reading the event log, the
//! projection and the queues, embedded or on AWS.

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
use terima_service::store::parse_event_id;

use crate::args::{EventsCommand, ResourcesCommand, StatusArgs};
use crate::backend::{Backend, Opened};
use crate::failure::Failure;
use crate::output::{
    EVENT_HEADER, event_json, event_row, print_event, print_json_line, print_resource, print_table,
    resource_json,
};

pub async fn events(command: EventsCommand) -> Result<(), Failure> {
    match command {
        EventsCommand::List {
            filter,
            backend,
            json,
        } => {
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let events = backend.events(&filter.filter()).await?;
            if json {
                for event in &events {
                    print_json_line(&event_json(event, false));
                }
            } else if events.is_empty() {
                eprintln!("no events match");
            } else {
                let rows: Vec<Vec<String>> = events.iter().map(event_row).collect();
                print_table(&EVENT_HEADER, &rows);
            }
            Ok(())
        }
        EventsCommand::Show { id, backend, json } => {
            let (provider, work_key) = parse_event_id(&id).ok_or_else(|| {
                Failure::Usage(format!(
                    "{id:?} is not an event id: expected <provider>:<work_key>"
                ))
            })?;
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let event = backend
                .event(provider, work_key)
                .await?
                .ok_or_else(|| Failure::NotFound(format!("no event {id}")))?;
            if json {
                print_json_line(&event_json(&event, true));
            } else {
                print_event(&event);
            }
            Ok(())
        }
    }
}

pub async fn resources(command: ResourcesCommand) -> Result<(), Failure> {
    let ResourcesCommand::Show {
        provider,
        kind,
        id,
        backend,
        json,
    } = command;
    let Opened { backend, .. } = Backend::open(&backend).await?;
    let resource = backend
        .resource(provider, &kind, &id)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("no {provider} {kind} {id}")))?;
    if json {
        print_json_line(&resource_json(&resource));
    } else {
        print_resource(&resource);
    }
    Ok(())
}

pub async fn status(args: StatusArgs) -> Result<(), Failure> {
    let Opened { backend, .. } = Backend::open(&args.backend).await?;
    let (visible, in_flight, dead) = match &backend {
        Backend::Embedded(store) => {
            let stats = store.stats().await?;
            (stats.visible, stats.in_flight, stats.dead_letters)
        }
        Backend::Aws(aws) => {
            let queue = aws.queue()?;
            let (visible, in_flight) = sqs_depth(queue.client(), queue.url()).await?;
            let (dead, dead_in_flight) = sqs_depth(queue.client(), aws.dlq_url()?).await?;
            (visible, in_flight, dead + dead_in_flight)
        }
    };
    if args.json {
        print_json_line(
            &json!({ "queued": visible, "in_flight": in_flight, "dead_letters": dead }),
        );
    } else {
        println!("queued:       {visible}\nin flight:    {in_flight}\ndead letters: {dead}");
    }
    Ok(())
}

/// Approximate visible and in-flight counts, as SQS reports them.
pub async fn sqs_depth(client: &aws_sdk_sqs::Client, url: &str) -> Result<(u64, u64), Failure> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| {
            Failure::Backend(format!(
                "sqs get_queue_attributes failed: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            ))
        })?;
    let attributes = out.attributes.unwrap_or_default();
    let count = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    Ok((
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}
