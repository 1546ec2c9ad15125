// The function app: Flex Consumption (FC1), Python 3.11, user-assigned identity for storage,
// telemetry, Key Vault references and the deployment package; App Service Authentication in
// front of the console and the API; every app setting the code reads.
param location string
param tags object
param name string
param planName string
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param keyVaultName string
param apiClientId string
param apiClientSecretConfigured bool
param refreshSchedule string
param scheduleTick string
param runQueueName string
param importQueueName string
param tablePrefix string
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

var keyVaultReference = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName='

// Every setting shared/settings.py reads (SETTING_NAMES and CONNECTION_SETTINGS), the host's
// identity-based storage, telemetry and secret references. Values of tunables equal the code's
// defaults (tests/deploy/test_infra.py checks both).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // One storage connection for the host, the timer, the run queue's trigger and the store.
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
    STORAGE_CONNECTION: ''
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // Trigger settings the host resolves (%REFRESH_SCHEDULE%, %SCHEDULE_TICK%, %RUN_QUEUE_NAME%,
    // %IMPORT_QUEUE_NAME%).
    REFRESH_SCHEDULE: refreshSchedule
    SCHEDULE_TICK: scheduleTick
    RUN_QUEUE_NAME: runQueueName
    IMPORT_QUEUE_NAME: importQueueName
    TABLE_PREFIX: tablePrefix
    ALLOWED_SALES_HOSTS: '*.dynamics.com,*.dynamics.us,*.dynamics.cn,*.crm.microsoftdynamics.de,*.crm.appsplatform.us'
    ALLOW_LOOPBACK_SALES: 'false'
    ENTRA_AUTHORITY_HOST: environment().authentication.loginEndpoint
    SALES_CA_BUNDLE: ''
    SALES_MAX_PARALLEL: '8'
    SALES_CHUNK_SIZE: '1000'
    SALES_PAGE_SIZE: '5000'
    SALES_MAX_RETRIES: '8'
    SALES_TIMEOUT_SECONDS: '120'
    RUN_SLICE_SECONDS: '480'
    LEASE_SECONDS: '120'
    MAX_DEQUEUE_COUNT: '5'
    // App Service Authentication validates callers; the app reads its client principal.
    AUTH_MODE: 'easyauth'
    ENTRA_TENANT_ID: tenant().tenantId
    API_AUDIENCE: 'api://${apiClientId}'
    JWKS_URL: ''
    TOKEN_ISSUER: ''
    LOCAL_DEV_USER: ''
    LOCAL_DEV_ROLES: ''
    MAX_UPLOAD_BYTES: '67108864'
    // Notifications (shared/notify): webhook URLs are app settings a target names (Key Vault
    // references work); loopback webhooks are for local development only.
    ALLOW_LOOPBACK_WEBHOOKS: 'false'
    NOTIFY_TIMEOUT_SECONDS: '20'
    // Secrets: Key Vault references resolved with the identity (platform.bicep stores them).
    SEGEXP_SECRET_SALES: '${keyVaultReference}sales-client-secret)'
    TOKEN_CACHE_KEY: '${keyVaultReference}token-cache-key)'
    MICROSOFT_PROVIDER_AUTHENTICATION_SECRET: '${keyVaultReference}api-client-secret)'
  }
}

// App Service Authentication (Easy Auth) in front of the console and the API: browsers are sent
// to sign in, bearer tokens for the API app registration are validated; /api/health stays open.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  dependsOn: [appSettings]
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: ['/api/health']
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: apiClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
          clientSecretSettingName: apiClientSecretConfigured ? 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET' : null
        }
        validation: {
          allowedAudiences: [
            'api://${apiClientId}'
            apiClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    httpSettings: {
      requireHttps: true
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
