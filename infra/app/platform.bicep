// Identity, storage (shared keys off), monitoring (local auth off) and Key Vault (RBAC).
param location string
param tags object
param identityName string
param storageAccountName string
param logAnalyticsName string
param applicationInsightsName string
param keyVaultName string
param deploymentContainerName string
@secure()
param salesClientSecret string
@secure()
param apiClientSecret string
@secure()
param tokenCacheKey string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

// The app reaches it only with the managed identity (AzureWebJobsStorage__credential).
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// Flex Consumption deploys the app package to this container (functionAppConfig.deployment).
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

// Local (instrumentation key) auth off: telemetry is sent with the identity's Entra token.
resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

// Connection secrets live here; app settings hold Key Vault references to them (api.bicep).
resource salesSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(salesClientSecret)) {
  parent: keyVault
  name: 'sales-client-secret'
  properties: { value: salesClientSecret }
}

resource apiSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(apiClientSecret)) {
  parent: keyVault
  name: 'api-client-secret'
  properties: { value: apiClientSecret }
}

// The key that encrypts delegated connections' token caches at rest (TOKEN_CACHE_KEY).
resource tokenCacheKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(tokenCacheKey)) {
  parent: keyVault
  name: 'token-cache-key'
  properties: { value: tokenCacheKey }
}

output identityId string = identity.id
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output storageAccountName string = storage.name
output deploymentContainerName string = deploymentContainer.name
output applicationInsightsName string = applicationInsights.name
output keyVaultName string = keyVault.name
