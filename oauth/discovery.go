package oauth

// Discovery is the provider's metadata: OpenID Connect Discovery 1.0
// section 3 and RFC 8414 section 2, served at both well-known paths.
// Everything listed is served; nothing served is left out.
type Discovery struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	UserinfoEndpoint                           string   `json:"userinfo_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	RegistrationEndpoint                       string   `json:"registration_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	DeviceAuthorizationEndpoint                string   `json:"device_authorization_endpoint"`
	EndSessionEndpoint                         string   `json:"end_session_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	SubjectTypesSupported                      []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported           []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                            []string `json:"claims_supported"`
	ClaimsParameterSupported                   bool     `json:"claims_parameter_supported"`
	RequestParameterSupported                  bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported               bool     `json:"request_uri_parameter_supported"`
	DPoPSigningAlgValuesSupported              []string `json:"dpop_signing_alg_values_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	PromptValuesSupported                      []string `json:"prompt_values_supported"`
	UILocalesSupported                         []string `json:"ui_locales_supported"`
}

// Discovery returns the provider's metadata.
func (p *Provider) Discovery() Discovery {
	confidential := []string{AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT}
	return Discovery{
		Issuer:                                     p.cfg.Issuer,
		AuthorizationEndpoint:                      p.Endpoint(PathAuthorize),
		TokenEndpoint:                              p.Endpoint(PathToken),
		UserinfoEndpoint:                           p.Endpoint(PathUserInfo),
		JWKSURI:                                    p.Endpoint(PathJWKS),
		RegistrationEndpoint:                       p.Endpoint(PathRegister),
		RevocationEndpoint:                         p.Endpoint(PathRevoke),
		IntrospectionEndpoint:                      p.Endpoint(PathIntrospect),
		DeviceAuthorizationEndpoint:                p.Endpoint(PathDeviceAuthorization),
		EndSessionEndpoint:                         p.Endpoint(PathEndSession),
		ScopesSupported:                            scopes,
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        grantTypes,
		SubjectTypesSupported:                      []string{"public"},
		IDTokenSigningAlgValuesSupported:           idTokenAlgs,
		TokenEndpointAuthMethodsSupported:          authMethods,
		TokenEndpointAuthSigningAlgValuesSupported: []string{"RS256", "ES256", "EdDSA"},
		RevocationEndpointAuthMethodsSupported:     authMethods,
		IntrospectionEndpointAuthMethodsSupported:  confidential,
		CodeChallengeMethodsSupported:              []string{"S256"},
		ClaimsSupported: []string{
			"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "azp", "amr", "did",
			"name", "given_name", "family_name", "preferred_username", "picture", "updated_at", "email", "email_verified",
		},
		DPoPSigningAlgValuesSupported:              []string{"ES256", "EdDSA"},
		AuthorizationResponseIssParameterSupported: true,
		PromptValuesSupported:                      []string{"login"},
		UILocalesSupported:                         []string{"en"},
	}
}
