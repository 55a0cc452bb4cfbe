package io.hzcloud.fhir;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.interceptor.api.IInterceptorService;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.binary.api.IBinaryStorageSvc;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.config.util.ResourceCountCacheUtil;
import ca.uhn.fhir.jpa.dao.FulltextSearchSvcImpl;
import ca.uhn.fhir.jpa.dao.IFulltextSearchSvc;
import ca.uhn.fhir.jpa.dao.search.HSearchSortHelperImpl;
import ca.uhn.fhir.jpa.dao.search.IHSearchSortHelper;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.provider.DaoRegistryResourceSupportedSvc;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.ValueSetOperationProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.search.IStaleSearchDeletingSvc;
import ca.uhn.fhir.jpa.search.StaleSearchDeletingSvcImpl;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.util.ResourceCountCache;
import ca.uhn.fhir.narrative2.NullNarrativeGenerator;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.api.IResourceSupportedSvc;
import ca.uhn.fhir.rest.server.HardcodedServerAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import java.util.Properties;
import javax.sql.DataSource;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration;
import org.springframework.boot.context.properties.bind.Bindable;
import org.springframework.boot.context.properties.bind.Binder;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.core.env.Environment;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/**
 * A FHIR R4 server on HAPI's JPA storage: the smallest set of beans jpaserver-base needs, with the
 * features the hospital's bundle uses (patient index, codes, records, orders) and none of the
 * starter's extras (no subscriptions, MDM, clinical reasoning, tester UI), which would cost memory
 * and start time on a small node.
 */
// HAPI defines its own EntityManagerFactory (below): Boot's Hibernate auto-configuration would
// make a second one. HAPI brings an Elasticsearch client along (for Hibernate Search, off here):
// Boot would connect it to localhost:9200 and log a failure every few seconds.
@SpringBootApplication(
    exclude = {HibernateJpaAutoConfiguration.class, ElasticsearchRestClientAutoConfiguration.class})
@Import({
  JpaR4Config.class,
  JpaBatch2Config.class,
  Batch2JobsConfig.class,
  ThreadPoolFactoryConfig.class,
  // in-process queues for batch2's work chunks (no message broker on the site)
  SubscriptionChannelConfig.class
})
public class Application {

  public static void main(String[] args) {
    SpringApplication.run(Application.class, args);
  }

  @Bean
  public JpaStorageSettings storageSettings() {
    JpaStorageSettings s = new JpaStorageSettings();
    // a reference names a resource on this server only: an order cannot point at a patient
    // somewhere else
    s.setAllowExternalReferences(false);
    s.setAutoCreatePlaceholderReferenceTargets(false);
    s.setEnforceReferentialIntegrityOnWrite(true);
    s.setEnforceReferentialIntegrityOnDelete(true);
    // CodeSystems of this size are stored (and so validate codes) at once, not by a later job
    s.setDeferIndexingForCodesystemsOfSize(1000);
    // a client may PUT by its own id (the installer's CodeSystems, ValueSets, SearchParameters);
    // ids the server assigns stay numeric
    s.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ALPHANUMERIC);
    return s;
  }

  @Bean
  public PartitionSettings partitionSettings() {
    return new PartitionSettings();
  }

  @Bean
  public SubscriptionSettings subscriptionSettings() {
    return new SubscriptionSettings();
  }

  @Bean
  public IFulltextSearchSvc fullTextSearchSvc() {
    return new FulltextSearchSvcImpl();
  }

  // the full-text service is wired in even with Hibernate Search off (it answers "not enabled")
  @Bean
  public IHSearchSortHelper hSearchSortHelper(ISearchParamRegistry searchParamRegistry) {
    return new HSearchSortHelperImpl(searchParamRegistry);
  }

  @Bean
  public IStaleSearchDeletingSvc staleSearchDeletingSvc() {
    return new StaleSearchDeletingSvcImpl();
  }

  @Bean
  public IBinaryStorageSvc binaryStorageSvc() {
    return new DatabaseBinaryContentStorageSvcImpl();
  }

  @Bean
  public DatabaseBackedPagingProvider databaseBackedPagingProvider() {
    DatabaseBackedPagingProvider p = new DatabaseBackedPagingProvider();
    p.setDefaultPageSize(20);
    p.setMaximumPageSize(200);
    return p;
  }

  @Bean
  public IResourceSupportedSvc resourceSupportedSvc(DaoRegistry daoRegistry) {
    return new DaoRegistryResourceSupportedSvc(daoRegistry);
  }

  @Bean(name = "myResourceCountsCache")
  public ResourceCountCache resourceCountsCache(IFhirSystemDao<?, ?> systemDao) {
    return ResourceCountCacheUtil.newResourceCountCache(systemDao);
  }

  /**
   * HAPI's persistence unit with the hibernate settings under spring.jpa.properties
   * (application.yaml: the PostgreSQL dialect, schema update, no Hibernate Search).
   */
  @Primary
  @Bean
  public LocalContainerEntityManagerFactoryBean entityManagerFactory(
      DataSource dataSource,
      ConfigurableListableBeanFactory beanFactory,
      FhirContext fhirContext,
      JpaStorageSettings storageSettings,
      Environment env) {
    LocalContainerEntityManagerFactoryBean emf =
        HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
    emf.setPersistenceUnitName("HAPI_PU");
    emf.setDataSource(dataSource);
    Properties props = new Properties();
    Binder.get(env)
        .bind("spring.jpa.properties", Bindable.mapOf(String.class, String.class))
        .ifBound(props::putAll);
    emf.setJpaProperties(props);
    return emf;
  }

  @Primary
  @Bean
  public JpaTransactionManager transactionManager(EntityManagerFactory emf) {
    return new JpaTransactionManager(emf);
  }

  @Bean
  public RestfulServer restfulServer(
      IFhirSystemDao<?, ?> systemDao,
      ResourceProviderFactory resourceProviders,
      IJpaSystemProvider systemProvider,
      ValueSetOperationProvider valueSetOperations,
      JpaStorageSettings storageSettings,
      ISearchParamRegistry searchParamRegistry,
      IValidationSupport validationSupport,
      DatabaseBackedPagingProvider pagingProvider,
      IInterceptorService interceptors,
      @Value("${hzcloud.fhir.server-address:}") String serverAddress,
      @Value("${hzcloud.fhir.mrn-system}") String mrnSystem) {
    FhirContext ctx = systemDao.getContext();
    ctx.setNarrativeGenerator(new NullNarrativeGenerator());
    RestfulServer server = new RestfulServer(ctx);
    server.registerProviders(resourceProviders.createProviders());
    server.registerProvider(systemProvider);
    // $expand and $validate-code on ValueSet; CodeSystem's $validate-code and $lookup come with
    // its resource provider
    server.registerProvider(valueSetOperations);
    server.setServerConformanceProvider(
        new JpaCapabilityStatementProvider(
            server, systemDao, storageSettings, searchParamRegistry, validationSupport));
    server.setPagingProvider(pagingProvider);
    server.setDefaultResponseEncoding(EncodingEnum.JSON);
    // behind the way in (HTTPS on the gateway): links in bundles name the hospital's URL,
    // not the pod's plain HTTP
    if (!serverAddress.isEmpty()) {
      server.setServerAddressStrategy(new HardcodedServerAddressStrategy(serverAddress));
    }
    // storage-level, so it holds for creates, updates and transactions alike
    interceptors.registerInterceptor(new MrnInterceptor(mrnSystem));
    return server;
  }

  @Bean
  public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer server) {
    ServletRegistrationBean<RestfulServer> reg = new ServletRegistrationBean<>(server, "/fhir/*");
    // initialise HAPI at start, not on the first request: the startup probe then means "ready"
    reg.setLoadOnStartup(1);
    return reg;
  }
}
