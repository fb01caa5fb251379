// The OpenID provider tests/test_oidc.py signs people in through: the npm package oidc-provider
// (a certified OpenID Connect implementation) with its own login and consent pages, on loopback.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"port": N, "client": {"client_id", "client_secret", "redirect_uri"},
//          "accounts": "accounts.json"}. The accounts file ({login: {name, email, groups}}) is read
// at every sign-in, so a test can move someone out of a group between two of them.
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = () => JSON.parse(readFileSync(config.accounts, 'utf8'));

const provider = new Provider(`http://127.0.0.1:${config.port}`, {
  clients: [{
    client_id: config.client.client_id,
    client_secret: config.client.client_secret,
    redirect_uris: [config.client.redirect_uri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
  }],
  // Every authorization request must carry a PKCE challenge, confidential client or not.
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  cookies: { keys: ['preview-portal-test-only'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts()[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id, preferred_username: id, name: account.name, email: account.email,
          email_verified: true, groups: account.groups,
        };
      },
    };
  },
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`listening on ${provider.issuer}`);
});
