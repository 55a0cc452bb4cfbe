package io.hzcloud.fhir;

import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.rest.server.exceptions.UnprocessableEntityException;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Patient;

/**
 * Every Patient carries exactly one identifier of the hospital's MRN system.
 *
 * <p>The uniqueness of that MRN is not checked here: a check-then-insert races between two
 * replicas. The installer loads a unique combo SearchParameter over the MRN instead
 * (bundles/default/services/fhir.yaml, load), which HAPI enforces with a unique database index,
 * so the second Patient with an MRN is refused (409) whichever replica takes it. This interceptor
 * makes sure no Patient escapes that index by having no MRN, or two.
 */
@Interceptor
public class MrnInterceptor {
  private final String system;

  public MrnInterceptor(String system) {
    this.system = system;
  }

  @Hook(Pointcut.STORAGE_PRESTORAGE_RESOURCE_CREATED)
  public void created(IBaseResource resource) {
    check(resource);
  }

  @Hook(Pointcut.STORAGE_PRESTORAGE_RESOURCE_UPDATED)
  public void updated(IBaseResource previous, IBaseResource resource) {
    check(resource);
  }

  private void check(IBaseResource resource) {
    if (!(resource instanceof Patient patient)) {
      return;
    }
    long mrns =
        patient.getIdentifier().stream()
            .filter(i -> system.equals(i.getSystem()) && i.hasValue())
            .count();
    if (mrns != 1) {
      throw new UnprocessableEntityException(
          "A Patient needs exactly one identifier with system "
              + system
              + " (the hospital's MRN); this one has "
              + mrns);
    }
  }
}
