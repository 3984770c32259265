//! Secrets Manager adapter: one secret per webhook, and the API key pepper.

use aws_sdk_secretsmanager::types::Tag;
use aws_sdk_secretsmanager::Client;

use super::aws_error::classify;
use super::{
    secret_document, signing_secret_from_document, SecretRef, SecretStore, StoreError,
    WebhookSecretMaterial,
};
use crate::domain::{Pepper, SigningSecret};

/// Webhook secrets under a name prefix, optionally encrypted with a customer KMS key.
#[derive(Clone, Debug)]
pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
    kms_key_id: Option<String>,
    pepper_secret_id: String,
}

impl SecretsManagerStore {
    pub fn new(
        client: Client,
        prefix: impl Into<String>,
        kms_key_id: Option<String>,
        pepper_secret_id: impl Into<String>,
    ) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            kms_key_id,
            pepper_secret_id: pepper_secret_id.into(),
        }
    }

    /// The secret name of a webhook.
    pub fn secret_name(&self, webhook_id: uuid::Uuid) -> String {
        format!("{}{}", self.prefix, webhook_id)
    }
}

impl SecretsManagerStore {
    /// Deletes a secret at once; one that does not exist (any more) is deleted already.
    async fn delete(&self, secret_id: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_secret()
            .secret_id(secret_id)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("secretsmanager.DeleteSecret", &e)),
        }
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

impl SecretStore for SecretsManagerStore {
    async fn create_webhook_secret(
        &self,
        material: &WebhookSecretMaterial<'_>,
    ) -> Result<SecretRef, StoreError> {
        let name = self.secret_name(material.webhook_id);
        let output = self
            .client
            .create_secret()
            .name(&name)
            .description("InstaView webhook signing secret and custom header values")
            .secret_string(secret_document(material))
            .set_kms_key_id(self.kms_key_id.clone())
            .tags(tag("webhookId", &material.webhook_id.to_string()))
            .tags(tag("apiKeyId", material.api_key_id))
            .send()
            .await
            .map_err(|e| classify("secretsmanager.CreateSecret", &e))?;
        let arn = output.arn.ok_or(StoreError::Failed {
            operation: "secretsmanager.CreateSecret",
            kind: "no ARN in the answer".into(),
        })?;
        Ok(SecretRef { arn })
    }

    async fn delete_webhook_secret(&self, webhook_id: uuid::Uuid) -> Result<(), StoreError> {
        self.delete(&self.secret_name(webhook_id)).await
    }

    async fn read_signing_secret(&self, secret: &SecretRef) -> Result<SigningSecret, StoreError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&secret.arn)
            .send()
            .await
            .map_err(|e| classify("secretsmanager.GetSecretValue(webhook)", &e))?;
        output
            .secret_string()
            .and_then(signing_secret_from_document)
            .ok_or(StoreError::Failed {
                operation: "secretsmanager.GetSecretValue(webhook)",
                kind: "malformed webhook secret".into(),
            })
    }

    async fn read_pepper(&self) -> Result<Pepper, StoreError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.pepper_secret_id)
            .send()
            .await
            .map_err(|e| classify("secretsmanager.GetSecretValue(pepper)", &e))?;
        let bytes = match (output.secret_string, output.secret_binary) {
            (Some(text), _) if !text.is_empty() => text.into_bytes(),
            (_, Some(blob)) if !blob.as_ref().is_empty() => blob.into_inner(),
            _ => {
                return Err(StoreError::Failed {
                    operation: "secretsmanager.GetSecretValue(pepper)",
                    kind: "empty pepper".into(),
                })
            }
        };
        Ok(Pepper::new(bytes))
    }
}
