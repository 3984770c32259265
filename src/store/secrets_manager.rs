//! Secrets Manager adapter: one secret per webhook, and the API key pepper.

use aws_sdk_secretsmanager::types::Tag;
use aws_sdk_secretsmanager::Client;

use uuid::Uuid;

use super::aws_error::classify;
use super::{SecretDocument, SecretRef, SecretStore, StoreError};
use crate::domain::Pepper;

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
    pub fn secret_name(&self, webhook_id: Uuid) -> String {
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
        webhook_id: Uuid,
        api_key_id: &str,
        document: &SecretDocument,
    ) -> Result<SecretRef, StoreError> {
        // Our own version id (the request token): the record pins it, and the SDK's retries
        // of this call reuse it, so a retried create is one version, not two.
        let version = Uuid::new_v4().to_string();
        let output = self
            .client
            .create_secret()
            .name(self.secret_name(webhook_id))
            .description("InstaView webhook signing secret and custom header values")
            .client_request_token(&version)
            .secret_string(document.to_json())
            .set_kms_key_id(self.kms_key_id.clone())
            .tags(tag("webhookId", &webhook_id.to_string()))
            .tags(tag("apiKeyId", api_key_id))
            .send()
            .await
            .map_err(|e| classify("secretsmanager.CreateSecret", &e))?;
        let arn = output.arn.ok_or(StoreError::Failed {
            operation: "secretsmanager.CreateSecret",
            kind: "no ARN in the answer".into(),
        })?;
        Ok(SecretRef {
            arn,
            version: Some(output.version_id.unwrap_or(version)),
        })
    }

    async fn put_webhook_secret(
        &self,
        secret: &SecretRef,
        document: &SecretDocument,
    ) -> Result<SecretRef, StoreError> {
        let version = Uuid::new_v4().to_string();
        let output = self
            .client
            .put_secret_value()
            .secret_id(&secret.arn)
            .client_request_token(&version)
            .secret_string(document.to_json())
            .send()
            .await
            .map_err(|e| classify("secretsmanager.PutSecretValue", &e))?;
        Ok(SecretRef {
            arn: secret.arn.clone(),
            version: Some(output.version_id.unwrap_or(version)),
        })
    }

    async fn read_webhook_secret(&self, secret: &SecretRef) -> Result<SecretDocument, StoreError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&secret.arn)
            .set_version_id(secret.version.clone())
            .send()
            .await
            .map_err(|e| classify("secretsmanager.GetSecretValue(webhook)", &e))?;
        output
            .secret_string()
            .and_then(SecretDocument::from_json)
            .ok_or(StoreError::Failed {
                operation: "secretsmanager.GetSecretValue(webhook)",
                kind: "malformed webhook secret".into(),
            })
    }

    async fn delete_webhook_secret(&self, webhook_id: Uuid) -> Result<(), StoreError> {
        self.delete(&self.secret_name(webhook_id)).await
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
