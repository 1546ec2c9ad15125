// Segment Export for Dynamics 365 Sales on Azure Functions Flex Consumption (`azd up`).
// Subscription scope: one resource group holding the platform (identity, storage, monitoring,
// Key Vault), the role assignments the code needs, and the function app.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags every resource')
param environmentName string

@minLength(1)
@description('Azure region of every resource (one that offers Flex Consumption)')
param location string

@description('Application (client) ID of the API app registration: App Service Authentication validates its tokens and the API reads its app roles (Admin, Contributor, Viewer)')
param apiClientId string

@secure()
@description('Client secret of the API app registration, for browser sign-in through App Service Authentication (empty: bearer tokens only)')
param apiClientSecret string = ''

@secure()
@description('Client secret of the Sales application user; stored in Key Vault and read through the SEGEXP_SECRET_SALES Key Vault reference (empty: add it to the vault later)')
param salesClientSecret string = ''

@secure()
@description('Base64 of 32 random bytes: encrypts delegated connections\' token caches at rest; stored in Key Vault and read through the TOKEN_CACHE_KEY Key Vault reference')
param tokenCacheKey string = ''

@description('Object ID of the person running azd: may manage the Key Vault secrets')
param principalId string = ''

// The settings the Functions host resolves in the triggers (%REFRESH_SCHEDULE%, %SCHEDULE_TICK%,
// %RUN_QUEUE_NAME%, %IMPORT_QUEUE_NAME%):
// they must be app settings. The values equal shared/settings.py's defaults (a test checks).
@description('NCRONTAB (6 fields, UTC) of the scheduled refresh')
param refreshSchedule string = '0 0 2 * * *'
@description('NCRONTAB of the timer that starts exports with their own schedule')
param scheduleTick string = '0 * * * * *'
@description('Run queue name (the queue trigger reads it; poison queue <name>-poison)')
param runQueueName string = 'segment-export-runs'
@description('Queue of background customer imports (POST /api/customer-imports; poison queue <name>-poison)')
param importQueueName string = 'segment-export-imports'
@description('Prefix of every table name')
param tablePrefix string = 'segexp'

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module platform 'app/platform.bicep' = {
  name: 'platform'
  scope: rg
  params: {
    location: location
    tags: tags
    identityName: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    storageAccountName: '${abbrs.storageStorageAccounts}${resourceToken}'
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    keyVaultName: '${abbrs.keyVaultVaults}${resourceToken}'
    deploymentContainerName: 'app-package-${resourceToken}'
    salesClientSecret: salesClientSecret
    apiClientSecret: apiClientSecret
    tokenCacheKey: tokenCacheKey
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: platform.outputs.storageAccountName
    applicationInsightsName: platform.outputs.applicationInsightsName
    keyVaultName: platform.outputs.keyVaultName
    identityPrincipalId: platform.outputs.identityPrincipalId
    deployerPrincipalId: principalId
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  dependsOn: [rbac]
  params: {
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    name: '${abbrs.webSitesFunctions}${resourceToken}'
    planName: '${abbrs.webServerFarms}${resourceToken}'
    identityId: platform.outputs.identityId
    identityClientId: platform.outputs.identityClientId
    storageAccountName: platform.outputs.storageAccountName
    deploymentContainerName: platform.outputs.deploymentContainerName
    applicationInsightsName: platform.outputs.applicationInsightsName
    keyVaultName: platform.outputs.keyVaultName
    apiClientId: apiClientId
    apiClientSecretConfigured: !empty(apiClientSecret)
    refreshSchedule: refreshSchedule
    scheduleTick: scheduleTick
    runQueueName: runQueueName
    importQueueName: importQueueName
    tablePrefix: tablePrefix
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_ENDPOINTS array = ['https://${api.outputs.defaultHostName}']
output AZURE_KEY_VAULT_NAME string = platform.outputs.keyVaultName
